"""The webhook endpoints of the REST API: ``/api/v1/webhooks``, each user's own.

An endpoint's secret is shown when it is created and when it is rotated, never again. Another
user's endpoint is a 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailbeacon.accounts import now_us
from mailbeacon.notify import webhooks
from mailbeacon.store import webhooks as store
from mailbeacon.store.webhooks import Endpoint
from mailbeacon.web.api import MAX_PAGE, ApiError, _int_param, _json_body, _services, authenticated

NOT_FOUND = "no such webhook"


async def _fields(request: Request, allowed: set[str]) -> dict[str, Any]:
    data = await _json_body(request)
    expected = f"expected some of: {', '.join(sorted(allowed))}"
    if unknown := sorted(set(data) - allowed):
        raise ApiError(422, f"unknown fields {', '.join(unknown)}: {expected}")
    if not data:
        raise ApiError(422, expected)
    return data


def _found(endpoint: Endpoint | None) -> Endpoint:
    if endpoint is None:
        raise ApiError(404, NOT_FOUND)
    return endpoint


async def create_webhook(request: Request, user_id: int) -> Response:
    data = await _fields(request, {"url", "events"})
    try:
        endpoint, secret = await _services(request).writer.run(
            webhooks.create, user_id, data.get("url"), data.get("events"), now=now_us()
        )
    except webhooks.Invalid as exc:
        raise ApiError(422, str(exc)) from exc
    return JSONResponse({**webhooks.describe(endpoint), "secret": secret}, status_code=201)


async def list_webhooks(request: Request, user_id: int) -> Response:
    found = await _services(request).read(store.webhooks, user_id)
    return JSONResponse({"webhooks": [webhooks.describe(e) for e in found]})


async def get_webhook(request: Request, user_id: int) -> Response:
    webhook_id = request.path_params["webhook_id"]
    found = await _services(request).read(store.webhook, webhook_id, user_id)
    return JSONResponse(webhooks.describe(_found(found)))


async def change_webhook(request: Request, user_id: int) -> Response:
    data = await _fields(request, {"url", "events", "enabled"})
    enabled = data.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ApiError(422, "enabled: expected true or false")
    try:
        changed = await _services(request).writer.run(
            webhooks.change, request.path_params["webhook_id"], user_id,
            url=data.get("url"), events=data.get("events"), enabled=enabled, now=now_us(),
        )  # fmt: skip
    except webhooks.Invalid as exc:
        raise ApiError(422, str(exc)) from exc
    return JSONResponse(webhooks.describe(_found(changed)))


async def delete_webhook(request: Request, user_id: int) -> Response:
    webhook_id = request.path_params["webhook_id"]
    if not await _services(request).writer.run(webhooks.delete, webhook_id, user_id):
        raise ApiError(404, NOT_FOUND)
    return Response(status_code=204)


async def rotate_secret(request: Request, user_id: int) -> Response:
    """A new secret; the old one keeps signing beside it for a day."""
    webhook_id = request.path_params["webhook_id"]
    secret = await _services(request).writer.run(
        webhooks.rotate_secret, webhook_id, user_id, now=now_us()
    )
    if secret is None:
        raise ApiError(404, NOT_FOUND)
    return JSONResponse({"id": webhook_id, "secret": secret})


async def delivery_log(request: Request, user_id: int) -> Response:
    after = _int_param(request, "after", 0, 2**62)
    limit = max(1, _int_param(request, "limit", 100, MAX_PAGE))
    found = await _services(request).read(
        webhooks.delivery_log, request.path_params["webhook_id"], user_id, after, limit
    )
    if found is None:
        raise ApiError(404, NOT_FOUND)
    return JSONResponse(found)


ONE = "/api/v1/webhooks/{webhook_id}"
ROUTES = [
    Route("/api/v1/webhooks", authenticated(create_webhook), methods=["POST"]),
    Route("/api/v1/webhooks", authenticated(list_webhooks), methods=["GET"]),
    Route(ONE, authenticated(get_webhook), methods=["GET"]),
    Route(ONE, authenticated(change_webhook), methods=["PATCH"]),
    Route(ONE, authenticated(delete_webhook), methods=["DELETE"]),
    Route(f"{ONE}/rotate-secret", authenticated(rotate_secret), methods=["POST"]),
    Route(f"{ONE}/deliveries", authenticated(delivery_log), methods=["GET"]),
]
