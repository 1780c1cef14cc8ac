"""The API of privacy: a recipient's tracking mode and consent, their data exported, their data
erased (``store.privacy``). Every route is the caller's own: another user's recipient of the
same address is another recipient."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailbeacon import accounts, privacy
from mailbeacon.reports import iso
from mailbeacon.store import privacy as store
from mailbeacon.web.api import (
    ApiError,
    _address,
    _json_body,
    _mode,
    _services,
    _text,
    authenticated,
)

ONE = "/api/v1/recipients/{address}"
SOURCE_LIMIT = 200


def _recipient(request: Request) -> str:
    return _address(request.path_params["address"], "address")


async def _privacy_of(request: Request, user_id: int, address: str) -> dict[str, Any]:
    found = await _services(request).read(store.recipient_privacy, user_id, address)
    if found is None:  # never mailed, never asked: what would apply
        found = {"address": address, "tracking": "full", "consent": "unknown"}
    at = found.get("consent_at")
    return {
        "address": found["address"],
        "tracking": found["tracking"],
        "consent": {
            "state": found["consent"],
            "at": iso(int(str(at))) if at is not None else None,
            "source": found.get("consent_source"),
        },
    }


async def get_consent(request: Request, user_id: int) -> Response:
    return JSONResponse(await _privacy_of(request, user_id, _recipient(request)))


async def put_consent(request: Request, user_id: int) -> Response:
    """``{"state": "granted" | "denied" | "unknown", "source": "…"}``: recorded with the time;
    the source says where the answer came from (a form, a call), ``api`` if not given."""
    address = _recipient(request)
    data = await _json_body(request)
    state = data.get("state")
    if state not in privacy.CONSENT:
        raise ApiError(422, f"state: one of {', '.join(privacy.CONSENT)}")
    source = _text(data, "source", required=False, limit=SOURCE_LIMIT) or "api"
    await _services(request).writer.run(
        store.set_consent, user_id, address, state, source, now=accounts.now_us()
    )
    return JSONResponse(await _privacy_of(request, user_id, address))


async def put_tracking(request: Request, user_id: int) -> Response:
    """``{"mode": "off" | "anonymous" | "pseudonymous" | "full"}``: the most this recipient is
    tracked (the user's and the send's may be stricter)."""
    address = _recipient(request)
    data = await _json_body(request)
    mode = _mode(data.get("mode"), "mode")
    await _services(request).writer.run(
        store.set_recipient_tracking, user_id, address, mode, now=accounts.now_us()
    )
    return JSONResponse(await _privacy_of(request, user_id, address))


async def export_recipient(request: Request, user_id: int) -> Response:
    """Everything kept about the recipient (GDPR art. 15 and 20), as JSON."""
    address = _recipient(request)
    found = await _services(request).read(store.export, user_id, address)
    return JSONResponse(
        {"address": address, "exported_at": iso(accounts.now_us()), "times": "µs", **found},
        headers={"Content-Disposition": 'attachment; filename="recipient-export.json"'},
    )


async def erase_recipient(request: Request, user_id: int) -> Response:
    """Erase the recipient (GDPR art. 17): what went, and what stays."""
    address = _recipient(request)
    removed = await _services(request).writer.run(store.erase, user_id, address)
    _services(request).keeper.poke()  # the figures of their campaigns, without them
    return JSONResponse(
        {
            "address": address,
            "removed": removed,
            "kept": {"suppressions": "an unsubscribe or bounce stays, so that they are not mailed"},
        }
    )


ROUTES = [
    Route(ONE, authenticated(erase_recipient), methods=["DELETE"]),
    Route(ONE + "/consent", authenticated(get_consent), methods=["GET"]),
    Route(ONE + "/consent", authenticated(put_consent), methods=["PUT"]),
    Route(ONE + "/tracking", authenticated(put_tracking), methods=["PUT"]),
    Route(ONE + "/export", authenticated(export_recipient), methods=["GET"]),
]
