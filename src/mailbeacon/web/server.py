"""Run the app on granian, embedded in our own event loop (uvloop).

Embedding keeps one process and one event loop: the hit writer, and later the SMTP relay and
background workers, live beside the HTTP server. SIGTERM and SIGINT stop it gracefully: granian
stops accepting, the ASGI lifespan shuts down, and the writer commits what is queued before the
process exits. SIGUSR1 writes every thread's stack and every task's to standard error, for a
server that seems stuck.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
from typing import Any

import uvloop
from granian.constants import Interfaces
from granian.server.embed import Server

from mailbeacon.web.app import App
from mailbeacon.web.tracking import Receive, Scope, Send


def serve(app: App, host: str, port: int, log_config: dict[str, Any] | None = None) -> None:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    async def main() -> None:
        server = Server(
            asgi, address=host, port=port, interface=Interfaces.ASGI, backlog=2048,
            log_dictconfig=log_config,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        # The threads' stacks are written at once, even with the event loop blocked; then, if it
        # is not, what each task awaits.
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True)
        await server.serve()

    uvloop.run(main())


def _dump_tasks() -> None:
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
