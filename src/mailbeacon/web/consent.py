"""``/p/{token}``: the link a sender puts in mail for the recipient to allow or refuse tracking
(``consent_url`` beside each copy the API makes). ``GET`` shows the question and two buttons;
only ``POST`` records the answer, with the source ``link``, so that a scanner following the
link records nothing (as ``web.pages`` explains). The token is signed for the message: it names
the message's recipient and no one else.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailbeacon import accounts
from mailbeacon.store import privacy as store
from mailbeacon.web.pages import page, posted
from mailbeacon.web.services import Services

ANSWERS = {"granted", "denied"}


def _page(found: tuple[int, str, str, str] | None, status: int = 200) -> Response:
    if found is None:
        return page("consent.html", 404, state="invalid", recipient="", sender="")
    _, recipient, sender, consent = found
    return page("consent.html", status, state=consent, recipient=recipient, sender=sender)


async def show(request: Request) -> Response:
    services: Services = request.app.state.services
    target = services.signer.verify("p", request.path_params["token"])
    found = None if target is None else await services.read(store.consent_target, target.message_id)
    return _page(found)


async def answer(request: Request) -> Response:
    services: Services = request.app.state.services
    answered = await posted(request, "p")
    if isinstance(answered, Response):
        return answered
    body, target = answered
    found = None if target is None else await services.read(store.consent_target, target.message_id)
    choice = parse_qs(body.decode("ascii", "replace")).get("consent", [""])[0]
    if found is None or choice not in ANSWERS:
        return _page(None)
    user_id, recipient, sender, _ = found
    await services.writer.run(
        store.set_consent, user_id, recipient, choice, "link", now=accounts.now_us()
    )
    return _page((user_id, recipient, sender, choice))


ROUTES = [
    Route("/p/{token}", show, methods=["GET"]),
    Route("/p/{token}", answer, methods=["POST"]),
]
