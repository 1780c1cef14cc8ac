"""What the commands share: the settings flags, the database, the acting user, output."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mailbeacon.settings import SETTINGS, Settings, SettingsError
from mailbeacon.store import queries
from mailbeacon.store.db import Database

F = TypeVar("F", bound=Callable[..., Any])

# No emoji codes: a fingerprint's ":AB:" or a subject's ":x:" is printed as it is.
console = Console(soft_wrap=True, emoji=False)
errors = Console(stderr=True, soft_wrap=True, emoji=False)


# What a terminal would obey rather than print, in text that came from a request or a message:
# C0 and C1 control characters (ESC starts the sequences that clear the screen, retitle the
# window or plant a hyperlink; CR overwrites a line) and the invisible and bidirectional ones
# that make text read otherwise than it is (the dashboard shows these as code points too).
_UNPRINTABLE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def printable(text: str) -> str:
    """``text`` with what a terminal would obey shown as its code point (``⟨U+001B⟩``)."""
    return _UNPRINTABLE.sub(lambda found: f"⟨U+{ord(found.group()):04X}⟩", text)


def fail(message: str) -> typer.Exit:
    # The message is plain text that may quote anything (a file's first line, an address):
    # neither Rich markup like `[/x]` nor emoji codes like `:x:` may be read into it.
    errors.print("[red]error:[/red] " + escape(message), markup=True, highlight=False, emoji=False)
    return typer.Exit(1)


def with_settings(command: F) -> F:
    """Give a command every setting as a flag (declared once, in ``settings.SETTINGS``) and call
    it with the resolved ``settings``."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    flags = [
        inspect.Parameter(
            s.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, s.flag, help=f"{s.help} [env: {s.env}]", show_default=False),
            annotation=bool | None if s.switch else str | None,  # a switch: True, or not given
        )
        for s in SETTINGS
    ]

    # Only the names and the docstring: the signature below, with its annotations evaluated,
    # is what Typer reads.
    @functools.wraps(command, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {s.name: kwargs.pop(s.name, None) for s in SETTINGS}
        try:
            # A setting may turn out wrong only when used (a signatures file that does not parse).
            return command(*args, settings=Settings.load(values), **kwargs)
        except SettingsError as exc:
            raise fail(str(exc)) from exc

    wrapper.__signature__ = signature.replace(parameters=own + flags)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {}
    return wrapper  # type: ignore[return-value]


def open_db(settings: Settings) -> Database:
    db = Database(settings.db)
    db.migrate()
    return db


def acting_user(db: Database, email: str | None) -> int:
    """The user named by ``--user``, or the first admin."""
    if email:
        user_id = db.read(queries.user_by_email, email)
        if user_id is None:
            raise fail(f"no user {email!r}: add one with `mailbeacon users add {email}`")
        return user_id
    user_id = db.read(queries.first_admin)
    if user_id is None:
        raise fail("no user yet: start `mailbeacon serve` once or run `mailbeacon users add`")
    return user_id


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))
