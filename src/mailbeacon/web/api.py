"""The REST API under ``/api/v1``: thin handlers that parse, authorise and call one function.

Every route but the OpenAPI document needs ``Authorization: Bearer <API key>``; a user sees only
their own messages, hits and campaigns. Errors are ``{"error": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import parseaddr
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailbeacon import accounts, privacy, reports, sessions
from mailbeacon.ingest.hits import client_ip
from mailbeacon.notify.alerts import MODES
from mailbeacon.privacy import Mode, consent_url
from mailbeacon.send import suppressions
from mailbeacon.store import notify, queries
from mailbeacon.store import privacy as privacy_store
from mailbeacon.text import single_line, unstorable
from mailbeacon.tracking.register import Envelope, Tracked, track_html
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.openapi import OPENAPI
from mailbeacon.web.services import Services
from mailbeacon.web.views import small_body

MAX_BODY = 10 * 1024 * 1024
MAX_RECIPIENTS = 1000
MAX_PAGE = 1000


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request, int], Awaitable[Response]]


def authenticated(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Resolve the bearer key to a user, and turn ``ApiError`` into its JSON answer."""

    async def endpoint(request: Request) -> Response:
        try:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'")
            services, ip, now = _services(request), _caller_ip(request) or "", accounts.now_us()
            wait = services.key_guesses.wait(ip, now)
            if wait is None:
                user = await services.read(queries.user_for_key, accounts.key_hash(key))
                if user is not None:
                    return await handler(request, user[0])
                wait = await services.writer.run(sessions.key_failure, ip, at=now)
                if wait is None:
                    raise ApiError(401, "unknown API key")
                services.key_guesses.refuse(ip, wait, now)
            return JSONResponse(
                {"error": f"too many unknown API keys from your address; try in {wait} s"},
                status_code=429, headers={"Retry-After": str(wait)},
            )  # fmt: skip
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    return endpoint


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > MAX_BODY  # refused before reading it
    body = None if too_large else await small_body(request, MAX_BODY)
    if body is None:
        raise ApiError(413, f"body too large: at most {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    return data


def _address(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ApiError(422, f"{field}: expected an email address as a string")
    _, address = parseaddr(value)
    controls = any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    if controls or "@" not in address or len(address) > 254 or any(c.isspace() for c in address):
        raise ApiError(422, f"{field}: {value!r} is not an email address")
    return address


def _text(data: dict[str, Any], field: str, *, required: bool, limit: int) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{field}: expected a string")
    if len(value) > limit:
        raise ApiError(422, f"{field}: at most {limit} characters")
    if unstorable(value):
        raise ApiError(422, f"{field}: NUL and unpaired surrogates (\\ud800…) are not text")
    return value


def _sent_at(value: Any) -> int:
    if value is None:
        return accounts.now_us()
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(422, "sent_at: expected ISO 8601 with a time zone, e.g. 2026-12-01T09:30Z")
    return int(moment.timestamp() * 1_000_000)


def _caller_ip(request: Request) -> str | None:
    """The address the sender submitted from (behind trusted proxies, the forwarded one)."""
    if request.client is None:
        return None
    trusted = _services(request).settings.trusted_proxies
    return client_ip(request.client.host, request.headers.get("x-forwarded-for"), trusted)


async def create_messages(request: Request, user_id: int) -> Response:
    data = await _json_body(request)
    to = data.get("to")
    if not isinstance(to, list) or not to:
        raise ApiError(422, "to: expected a non-empty list of email addresses")
    if len(to) > MAX_RECIPIENTS:
        raise ApiError(422, f"to: at most {MAX_RECIPIENTS} recipients a request")
    recipients = [_address(r, f"to[{i}]") for i, r in enumerate(to)]
    html = _text(data, "html", required=True, limit=MAX_BODY) or ""
    _text(data, "text", required=False, limit=MAX_BODY)  # accepted, kept by the caller
    envelope = Envelope(
        sender=_address(data.get("from"), "from"),
        subject=_text(data, "subject", required=True, limit=998) or "",
        # A name on one line, as the relay makes it: a page and a link can name it.
        campaign=single_line(_text(data, "campaign", required=False, limit=200) or "", 200) or None,
        sent_at=_sent_at(data.get("sent_at")),
        sender_ip=_caller_ip(request),
    )
    asked = _mode(data.get("tracking"), "tracking") if "tracking" in data else None
    services = _services(request)
    modes = await services.read(privacy_store.modes, user_id, recipients, asked)
    tracked = await anyio.to_thread.run_sync(
        functools.partial(
            track_html, services.signer, services.settings.public_url, envelope, recipients,
            html, modes=modes,
        )
    )  # fmt: skip
    registered = [t.message for t in tracked if t.message is not None]
    await services.writer.run(queries.save_messages, user_id, registered, now=accounts.now_us())
    copies = [_copy(t, services.signer, services.settings.public_url) for t in tracked]
    return JSONResponse({"messages": copies}, status_code=201)


def _copy(t: Tracked, signer: Signer, public_url: str) -> dict[str, Any]:
    """A recipient's copy as the API answers it; with tracking off, nothing is registered and
    the copy is the HTML as given (``id``, ``pixel_url`` and ``consent_url`` null). The
    ``consent_url`` is a page where the recipient allows or refuses tracking (``web.consent``):
    not for an anonymous copy, which names nobody."""
    links = t.message.links if t.message is not None else ()
    named = t.message is not None and t.message.tracking != "anonymous"
    return {
        "id": t.message.id if t.message is not None else None,
        "consent_url": consent_url(signer, public_url, t.message.id)
        if t.message is not None and named
        else None,
        "recipient": t.recipient,
        "tracking": t.message.tracking if t.message is not None else "off",
        "pixel_url": t.pixel_url,
        "links": [
            {"url": url, "tracked_url": tracked_url}
            for url, tracked_url in zip(links, t.tracked_urls, strict=True)
        ],
        "html": t.html,
    }


SETTINGS_FIELDS = ("track_default", "alerts", "tracking", "consent_required", "retention_days")


async def _put_privacy(request: Request, user_id: int, data: dict[str, Any]) -> None:
    if not {"tracking", "consent_required", "retention_days"} & set(data):
        return
    tracking, required, days = await _services(request).read(privacy_store.user_privacy, user_id)
    if "tracking" in data:
        tracking = _mode(data["tracking"], "tracking")
    if "consent_required" in data:
        if not isinstance(data["consent_required"], bool):
            raise ApiError(422, "consent_required: expected true or false")
        required = data["consent_required"]
    if "retention_days" in data:
        days = data["retention_days"]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 36500:
            raise ApiError(422, "retention_days: expected a whole number of days, 0 to 36500")
    await _services(request).writer.run(
        privacy_store.set_user_privacy, user_id, tracking=tracking, consent_required=required,
        retention_days=days,
    )  # fmt: skip


def _mode(value: Any, field: str) -> Mode:
    try:
        return privacy.mode(value, field)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


async def get_message(request: Request, user_id: int) -> Response:
    found = await _services(request).read(
        reports.message, user_id, request.path_params["message_id"]
    )
    if found is None:
        raise ApiError(404, "no such message")
    return JSONResponse(found)


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, f"{name}: expected a non-negative integer")
    return min(int(raw), maximum)


async def list_events(request: Request, user_id: int) -> Response:
    after = _int_param(request, "after", 0, 2**62)
    limit = max(1, _int_param(request, "limit", 100, MAX_PAGE))
    return JSONResponse(await _services(request).read(reports.events, user_id, after, limit))


async def list_bounces(request: Request, user_id: int) -> Response:
    after = request.query_params.get("after") or "0.0"
    time, _, id_ = after.partition(".")
    if not (re.fullmatch(r"[0-9]{1,18}", time) and re.fullmatch(r"[0-9]{1,18}", id_)):
        raise ApiError(400, "after: expected the `next` of an earlier page")
    limit = max(1, _int_param(request, "limit", 100, MAX_PAGE))
    found = await _services(request).read(reports.bounces, user_id, (int(time), int(id_)), limit)
    return JSONResponse(found)


async def campaign_stats(request: Request, user_id: int) -> Response:
    name = request.path_params["name"]
    found = await _services(request).read(reports.stats, queries.Scope(user_id, campaign=name))
    if not found:
        raise ApiError(404, "no messages in this campaign")
    return JSONResponse(found[0])


async def recipient_stats(request: Request, user_id: int) -> Response:
    scope = queries.Scope(user_id, recipient=request.path_params["address"])
    found = await _services(request).read(reports.stats, scope)
    if not found:
        raise ApiError(404, "no messages to this recipient")
    return JSONResponse(found[0])


async def list_suppressions(request: Request, user_id: int) -> Response:
    after = request.query_params.get("after") or ""
    limit = max(1, _int_param(request, "limit", 100, MAX_PAGE))
    return JSONResponse(await _services(request).read(suppressions.listing, user_id, after, limit))


async def lift_suppression(request: Request, user_id: int) -> Response:
    address = request.path_params["address"]
    if not await _services(request).writer.run(suppressions.lift, user_id, address):
        raise ApiError(404, "this address is not suppressed")
    return Response(status_code=204)


async def self_mark(request: Request, user_id: int) -> Response:
    """A link that marks the browser it is opened in as the sender's own (``/self/{mark}``)."""
    services = _services(request)
    url = f"{services.settings.public_url}/self/{services.signer.mark(user_id)}"
    return JSONResponse({"url": url}, status_code=201)


async def _settings_of(request: Request, user_id: int) -> dict[str, Any]:
    services = _services(request)
    tracking, consent_required, retention_days = await services.read(
        privacy_store.user_privacy, user_id
    )
    return {
        "track_default": await services.read(queries.track_default, user_id),
        "alerts": await services.read(notify.alert_mode, user_id),
        "tracking": tracking,
        "consent_required": consent_required,
        "retention_days": retention_days,
    }


async def get_settings(request: Request, user_id: int) -> Response:
    return JSONResponse(await _settings_of(request, user_id))


async def put_settings(request: Request, user_id: int) -> Response:
    """The user's own settings, any of them: whether mail through the relay is tracked by
    default, when they get alert emails (``notify.alerts``), and privacy: their tracking mode,
    whether a recipient's consent is required (unknown is then off), and how many days their
    hits are kept (0: the server's ``--retention-days``)."""
    data = await _json_body(request)
    on, mode = data.get("track_default"), data.get("alerts")
    if not data or set(data) - {*SETTINGS_FIELDS}:
        raise ApiError(422, f"expected an object with any of {', '.join(SETTINGS_FIELDS)}")
    await _put_privacy(request, user_id, data)
    if "track_default" in data and not isinstance(on, bool):
        raise ApiError(422, "track_default: expected true or false")
    if "alerts" in data and mode not in MODES:
        raise ApiError(422, f"alerts: expected one of {', '.join(MODES)}")
    writer = _services(request).writer
    if isinstance(on, bool):
        await writer.run(queries.set_track_default, user_id, on)
    if isinstance(mode, str):
        await writer.run(notify.set_alert_mode, user_id, mode)
    return JSONResponse(await _settings_of(request, user_id))


async def mute(request: Request, user_id: int) -> Response:
    """Mute (POST) or unmute (DELETE) the alert emails of one message."""
    message_id = request.path_params["message_id"]
    on = request.method == "POST"
    if not await _services(request).writer.run(notify.set_muted, user_id, message_id, on):
        raise ApiError(404, "no such message")
    return JSONResponse({"id": message_id, "alerts_muted": on})


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


ROUTES = [
    Route("/api/v1/messages", authenticated(create_messages), methods=["POST"]),
    Route("/api/v1/messages/{message_id}", authenticated(get_message), methods=["GET"]),
    Route("/api/v1/messages/{message_id}/mute", authenticated(mute), methods=["POST", "DELETE"]),
    Route("/api/v1/events", authenticated(list_events), methods=["GET"]),
    Route("/api/v1/bounces", authenticated(list_bounces), methods=["GET"]),
    Route("/api/v1/campaigns/{name:path}/stats", authenticated(campaign_stats), methods=["GET"]),
    Route("/api/v1/recipients/{address}/stats", authenticated(recipient_stats), methods=["GET"]),
    Route("/api/v1/self-mark", authenticated(self_mark), methods=["POST"]),
    Route("/api/v1/suppressions", authenticated(list_suppressions), methods=["GET"]),
    Route("/api/v1/suppressions/{address}", authenticated(lift_suppression), methods=["DELETE"]),
    Route("/api/v1/settings", authenticated(get_settings), methods=["GET"]),
    Route("/api/v1/settings", authenticated(put_settings), methods=["PUT"]),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
]
