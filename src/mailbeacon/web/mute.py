"""``/m/{token}``: the "mute alerts for this message" link at the foot of each alert email.

Like the unsubscribe page (``web.pages``), ``GET`` only shows a button and ``POST`` mutes, so a
scanner following the link in the sender's mailbox mutes nothing. The token is signed for the
message alone: the link works without signing in, and names no other message.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailbeacon.store import notify
from mailbeacon.web.pages import page, posted
from mailbeacon.web.services import Services


def _page(state: str, found: tuple[str, str] | None, status: int = 200) -> Response:
    recipient, subject = found or ("", "")
    return page("mute.html", status, state=state, recipient=recipient, subject=subject)


async def show(request: Request) -> Response:
    services: Services = request.app.state.services
    target = services.signer.verify("m", request.path_params["token"])
    found = None if target is None else await services.read(notify.mute_target, target.message_id)
    if found is None:
        return _page("invalid", None, 404)
    return _page("done" if found[2] else "confirm", found[:2])


async def confirm(request: Request) -> Response:
    services: Services = request.app.state.services
    answered = await posted(request, "m")
    if isinstance(answered, Response):
        return answered
    _, target = answered
    found = None
    if target is not None:
        found = await services.writer.run(notify.mute_message, target.message_id)
    if found is None:
        return _page("invalid", None, 404)
    return _page("done", found)


ROUTES = [
    Route("/m/{token}", show, methods=["GET"]),
    Route("/m/{token}", confirm, methods=["POST"]),
]
