"""The API keys of the settings page: make one (shown once) or revoke one.

Any key may be revoked, the last one too: a key that leaked must stop working at once, and a
signed-in user can always make another here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailbeacon import accounts
from mailbeacon.store import queries
from mailbeacon.web.api import _services
from mailbeacon.web.auth import SignedIn, signed_in
from mailbeacon.web.views import render


@signed_in
async def create(request: Request, me: SignedIn) -> Response:
    api_key = await _services(request).writer.run(accounts.add_api_key, me.user_id)
    return render(request, "app/new_key.html", me=me, nav="settings", api_key=api_key)


@signed_in
async def revoke(request: Request, me: SignedIn) -> Response:
    key_id: int = request.path_params["key_id"]
    if not await _services(request).writer.run(queries.revoke_api_key, me.user_id, key_id):
        return render(request, "app/missing.html", status=404, me=me, nav="settings")
    return RedirectResponse("/settings#keys", status_code=303)


ROUTES = [
    Route("/settings/keys", create, methods=["POST"]),
    Route("/settings/keys/{key_id:int}/revoke", revoke, methods=["POST"]),
]
