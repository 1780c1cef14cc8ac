"""Who is on the other end of a test request.

A TestClient has one peer address; real traffic has two: the sender calling the API, and the
recipients' clients fetching pixels and links. This stands in for the network: API calls come
from ``SENDER``, tracking requests from the client's own peer, and a request can name its peer
in ``X-Test-Peer`` (a recipient behind Apple's relay, a proxy, the sender reading their mail).
"""

from __future__ import annotations

from mailbeacon.web.app import App
from mailbeacon.web.tracking import Receive, Scope, Send

SENDER = "192.0.2.25"


class Peers:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            port = scope["client"][1] if scope.get("client") else 50000
            named = dict(scope["headers"]).get(b"x-test-peer")
            if named is not None:
                scope = {**scope, "client": (named.decode(), port)}
            elif scope["path"].startswith("/api/"):
                scope = {**scope, "client": (SENDER, port)}
        await self.app(scope, receive, send)
