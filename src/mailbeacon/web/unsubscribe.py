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

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mailbeacon import accounts
from mailbeacon.send.suppressions import Subscriber, subscriber, unsubscribe
from mailbeacon.web.pages import HEADERS, page, posted
from mailbeacon.web.services import Services


def _page(state: str, found: Subscriber | None, status: int = 200) -> Response:
    address, sender = (found.address, found.sender) if found else ("", "")
    return page("unsubscribe.html", status, state=state, address=address, sender=sender)


def _one_click(body: bytes) -> bool:
    """RFC 8058's POST: ``List-Unsubscribe=One-Click``, form-encoded or as multipart/form-data."""
    return b"List-Unsubscribe=One-Click" in body or (
        b'name="List-Unsubscribe"' in body and b"One-Click" in body
    )


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
    answered = await posted(request, "u")
    if isinstance(answered, Response):
        return answered
    body, target = answered
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
