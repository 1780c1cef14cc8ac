"""A campaign's subject and bodies as sandboxed Jinja2 templates.

The templates come from the sender, the variables from a CSV file that may have come from
anywhere: the sandbox refuses attribute access to Python's internals (``''.__class__``…), the
HTML body escapes every variable (a name like ``<script>`` arrives as text), and a variable the
list does not have is an error that names it, never an empty string in 5,000 emails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

_HTML = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_TEXT = SandboxedEnvironment(
    autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
)


class TemplateProblem(Exception):
    """A template that does not compile, or fails for a recipient; the text says where and why."""


@dataclass(frozen=True)
class Rendered:
    subject: str  # on one line
    html: str
    text: str | None


class Templates:
    """The subject, the HTML body and the optional text body, compiled once."""

    def __init__(self, subject: str, html: str, text: str | None) -> None:
        self.sources = (subject, html, text)
        self._subject = _compile(_TEXT, subject, "the subject")
        self._html = _compile(_HTML, html, "the HTML template")
        self._text = None if text is None else _compile(_TEXT, text, "the text template")

    def __reduce__(self) -> tuple[type[Templates], tuple[str, str, str | None]]:
        # Compiled templates do not pickle: a worker process compiles its own from the sources.
        return Templates, self.sources

    def render(self, variables: Mapping[str, str]) -> Rendered:
        subject = _render(self._subject, variables, "the subject")
        return Rendered(
            # A line break in a header would end it: a CSV value must not be able to add one.
            subject=" ".join(subject.split()),
            html=_render(self._html, variables, "the HTML template"),
            text=None
            if self._text is None
            else _render(self._text, variables, "the text template"),
        )


def _compile(env: SandboxedEnvironment, source: str, what: str) -> Template:
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{what}, line {exc.lineno}: {exc.message}") from exc


def _render(template: Template, variables: Mapping[str, str], what: str) -> str:
    try:
        return template.render(variables)
    except UndefinedError as exc:
        message = exc.message or "undefined"
        hint = " (no such column in the list)" if message.endswith(" is undefined") else ""
        raise TemplateProblem(f"{what}: {message}{hint}") from exc
    except SecurityError as exc:
        raise TemplateProblem(f"{what}: refused by the sandbox: {exc}") from exc
    except TemplateError as exc:
        raise TemplateProblem(f"{what}: {exc}") from exc
    except Exception as exc:  # the template's own expressions: `{{ 100 // share|int }}`
        raise TemplateProblem(f"{what}: {type(exc).__name__}: {exc}") from exc
