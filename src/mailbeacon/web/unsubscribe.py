"""The unsubscribe page, ``/u/{token}``: the link of ``List-Unsubscribe`` and of campaign bodies.

``GET`` only shows a page with a button: security scanners and link previews follow every link
in a message (RESEARCH.md §1), so a GET that unsubscribed would unsubscribe people who never
asked. ``POST`` unsubscribes: the page's button, or the one-click POST of RFC 8058
(``List-Unsubscribe=One-Click``) that Gmail and Yahoo send from their own unsubscribe buttons,
which wants a 200 and nothing more. A visit here is neither a hit nor a click.

The page says only what the token names (the recipient and the sender), escapes all of it, loads
nothing from anywhere, and its Content-Security-Policy allows nothing but its own inline style
and posting back to itself.
"""

from __future__ import annotations

import base64
import hashlib

from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailbeacon import accounts
from mailbeacon.send.suppressions import Subscriber, subscriber, unsubscribe
from mailbeacon.web.services import Services

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

_PAGES = Environment(loader=PackageLoader("mailbeacon.web", "templates"), autoescape=True)


def _page(state: str, found: Subscriber | None, status: int = 200) -> Response:
    html = _PAGES.get_template("unsubscribe.html").render(
        state=state,
        address=found.address if found else "",
        sender=found.sender if found else "",
        style=Markup(STYLE),  # noqa: S704 - a constant of ours, hashed into the policy above
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _one_click(body: bytes) -> bool:
    """RFC 8058's POST: ``List-Unsubscribe=One-Click``, form-encoded or as multipart/form-data."""
    return b"List-Unsubscribe=One-Click" in body or (
        b'name="List-Unsubscribe"' in body and b"One-Click" in body
    )


async def _body(request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


async def show(request: Request) -> Response:
    """The page with the button; unsubscribes no one."""
    services: Services = request.app.state.services
    target = services.signer.verify("u", request.path_params["token"])
    found = None if target is None else await services.read(subscriber, target.message_id)
    if found is None:
        return _page("invalid", None, 404)
    return _page("done" if found.unsubscribed else "confirm", found)


async def confirm(request: Request) -> Response:
    """Unsubscribe (again: nothing changes); a forged token records nothing."""
    services: Services = request.app.state.services
    body = await _body(request)
    if body is None:
        return PlainTextResponse("body too large\n", status_code=413, headers=HEADERS)
    target = services.signer.verify("u", request.path_params["token"])
    found = None
    if target is not None:
        found = await services.writer.run(unsubscribe, target.message_id, now=accounts.now_us())
    if found is None:
        return _page("invalid", None, 404)
    if _one_click(body):
        return PlainTextResponse("unsubscribed\n", headers=HEADERS)
    return _page("done", found)


ROUTES = [
    Route("/u/{token}", show, methods=["GET"]),
    Route("/u/{token}", confirm, methods=["POST"]),
]
