"""What the small pages of links in mail share (``/u/`` unsubscribe, ``/m/`` mute alerts): a
button that POSTs, since scanners and link previews follow every link in a message with a GET
(RESEARCH.md §1); escaped text; nothing loaded from anywhere; and a Content-Security-Policy that
allows nothing but their own inline style and posting back to themselves."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from markupsafe import Markup
from starlette.responses import HTMLResponse

from mailbeacon.web.views import TEMPLATES

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


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        style=Markup(STYLE),  # noqa: S704 - a constant of ours, hashed into the policy above
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)
