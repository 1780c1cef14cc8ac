"""``GET /api/v1/stream``: the user's events as server-sent events, live.

Each event is ``id: <event id>``, ``event: <type>`` and ``data: <payload>`` (the webhook body).
A client that reconnects with ``Last-Event-ID`` (browsers' ``EventSource`` do it on their own)
or ``?after=ID`` gets what it missed first; without either, the stream starts now. ``?types=``
chooses among the event types (default: opens, clicks, bounces, unsubscribes; ``email.hit`` is
published only for users with an endpoint subscribed to it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mailbeacon.notify.events import EVENT_TYPES, payload
from mailbeacon.notify.stream import STREAM_TYPES, follow
from mailbeacon.store import notify as store
from mailbeacon.web.api import ApiError, _services, authenticated
from mailbeacon.web.services import Services

HEARTBEAT = 15.0  # seconds: a comment line keeps proxies from closing a quiet stream
RETRY_MS = 2000  # what browsers wait before reconnecting


def _start(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "Last-Event-ID or after: expected the id of an earlier event")
    return int(raw)


def _types(request: Request) -> tuple[str, ...]:
    raw = request.query_params.get("types")
    if not raw:
        return STREAM_TYPES
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown or not types:
        raise ApiError(400, f"types: expected some of {', '.join(EVENT_TYPES)}")
    return types


def event_stream(
    services: Services, user_id: int, after: int, types: tuple[str, ...]
) -> StreamingResponse:
    """The user's events past ``after`` as server-sent events, for as long as the client
    listens (the API's stream, and the dashboard's live feed)."""

    async def read(after: int, limit: int) -> list[store.Event]:
        return await services.read(store.events_after, user_id, after, limit, types)

    async def body() -> AsyncIterator[bytes]:
        yield f"retry: {RETRY_MS}\n: mailbeacon stream\n\n".encode()
        beat = time.monotonic()
        async for event in follow(read, after, services.hub):
            if event is not None:
                head = f"id: {event.id}\nevent: {event.type}\ndata: ".encode()
                yield head + payload(event.type, event.created_at, event.data) + b"\n\n"
                beat = time.monotonic()
            elif time.monotonic() - beat >= HEARTBEAT:
                yield b": keep-alive\n\n"
                beat = time.monotonic()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def start_of(request: Request, services: Services, user_id: int) -> int:
    """Where a stream starts: after ``Last-Event-ID`` or ``?after=``, else now."""
    after = _start(request)
    return await services.read(store.last_event_id, user_id) if after is None else after


async def stream(request: Request, user_id: int) -> Response:
    services = _services(request)
    types = _types(request)
    return event_stream(services, user_id, await start_of(request, services, user_id), types)


ROUTES = [Route("/api/v1/stream", authenticated(stream), methods=["GET"])]
