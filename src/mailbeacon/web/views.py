"""What the dashboard's pages share: their templates, their security headers, their forms.

Every value a template prints is escaped (``autoescape``), and the Content-Security-Policy lets a
page run and style only what ``/static/`` serves: no inline script or style, nothing from
another site, no form posting elsewhere, no framing. A value that slipped through escaping
would still run nothing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse

# Characters that change how text around them reads without showing themselves: bidirectional
# overrides and isolates, zero-width ones. A subject or User-Agent with them could pass itself
# off as other text ("Trojan Source", CVE-2021-42574): they are shown as their code points.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def visible(value: Any) -> Any:
    """What a template prints: text with its invisible characters made visible."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return _INVISIBLE.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", value)
    return value


TEMPLATES = Environment(
    loader=PackageLoader("mailbeacon.web", "templates"), autoescape=True, finalize=visible
)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM = 64 * 1024  # bytes: the largest form a page sends (a webhook's URL and its events)


def render(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    """A page from ``templates/``, with the security headers; the template gets ``request``
    and ``values``. Pages extending ``app/layout.html`` take ``me`` (a ``SignedIn``, or None)
    and ``nav`` (the menu entry to mark as the current page)."""
    html = TEMPLATES.get_template(template).render(request=request, **values)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


class FormTooLarge(Exception):
    pass


async def small_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is over ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def form(request: Request) -> FormData:
    """The request's url-encoded form (read once, then kept); empty for another content type.
    Raises ``FormTooLarge`` past ``MAX_FORM`` bytes."""
    kept: FormData | None = getattr(request.state, "form", None)
    if kept is not None:
        return kept
    body = await small_body(request, MAX_FORM)
    if body is None:
        raise FormTooLarge
    fields: list[tuple[str, str | UploadFile]] = []
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        fields.extend(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    kept = request.state.form = FormData(fields)
    return kept
