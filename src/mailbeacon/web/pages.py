"""What the small pages of links in mail share (``/u/`` unsubscribe, ``/m/`` mute alerts): a
button that POSTs, since scanners and link previews follow every link in a message with a GET
(RESEARCH.md §1); escaped text; nothing loaded from anywhere; and a Content-Security-Policy that
allows nothing but their own inline style and posting back to themselves."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from mailbeacon.tracking.tokens import Kind, Signer, Target
from mailbeacon.web.views import TEMPLATES, small_body

MAX_BODY = 4096  # a form with one button; RFC 8058's body is 26 bytes
STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;color:#222;background:#fff;margin:0}"
    "main{max-width:32rem;margin:4rem auto;padding:0 1rem}"
    "button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}


async def posted(request: Request, kind: Kind) -> tuple[bytes, Target | None] | Response:
    """A page's POST: its body and what its token names (None: forged or cut short); or the
    ``413`` answer to a body over ``MAX_BODY``."""
    body = await small_body(request, MAX_BODY)
    if body is None:
        return PlainTextResponse("body too large\n", status_code=413, headers=HEADERS)
    signer: Signer = request.app.state.services.signer
    return body, signer.verify(kind, request.path_params["token"])


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        style=Markup(STYLE),  # noqa: S704 - a constant of ours, hashed into the policy above
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)
