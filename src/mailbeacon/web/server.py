"""Run the app on granian, embedded in our own event loop (uvloop)."""

from __future__ import annotations

import uvloop
from granian.constants import Interfaces
from granian.server.embed import Server

from mailbeacon.web.app import App


def serve(app: App, host: str, port: int) -> None:
    async def main() -> None:
        server = Server(app, address=host, port=port, interface=Interfaces.ASGI, backlog=2048)
        await server.serve()

    uvloop.run(main())
