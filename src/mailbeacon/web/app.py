"""The ASGI application: tracking routes in front, the Starlette app (API, robots) behind."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mailbeacon.classify import clients
from mailbeacon.classify.apple import Refresher
from mailbeacon.relay.server import RelayServer
from mailbeacon.web.api import ROUTES as API_ROUTES
from mailbeacon.web.auth import ROUTES as AUTH_ROUTES
from mailbeacon.web.consent import ROUTES as CONSENT_ROUTES
from mailbeacon.web.dashboard import ROUTES as DASHBOARD_ROUTES
from mailbeacon.web.keys import ROUTES as KEY_ROUTES
from mailbeacon.web.mute import ROUTES as MUTE_ROUTES
from mailbeacon.web.ops import ROUTES as OPS_ROUTES
from mailbeacon.web.privacy_api import ROUTES as PRIVACY_ROUTES
from mailbeacon.web.services import Services
from mailbeacon.web.stream import ROUTES as STREAM_ROUTES
from mailbeacon.web.tracking import SELF_COOKIE, Receive, Scope, Send, TrackingRoutes
from mailbeacon.web.unsubscribe import ROUTES as UNSUBSCRIBE_ROUTES
from mailbeacon.web.webhooks_api import ROUTES as WEBHOOK_ROUTES

ROBOTS = (
    "User-agent: *\nDisallow: /o/\nDisallow: /c/\nDisallow: /u/\nDisallow: /m/\nDisallow: /p/\n"
)


async def robots(request: Request) -> Response:
    return PlainTextResponse(ROBOTS)


async def mark_browser(request: Request) -> Response:
    """Leave the sender's mark in this browser: its later views of their mail are ``self``.

    The cookie lives on the tracking domain, where the pixel is fetched from, so it must be
    sent in third-party contexts (webmail): ``SameSite=None``, hence ``Secure`` over https.
    """
    services: Services = request.app.state.services
    mark = request.path_params["mark"]
    if services.signer.verify_mark(mark) is None:
        return PlainTextResponse("This link is not valid.\n", status_code=404)
    response = PlainTextResponse(
        "This browser is now marked as yours: your own views of your mail will not count.\n"
    )
    secure = services.settings.public_url.startswith("https://")
    response.set_cookie(
        SELF_COOKIE, mark, max_age=400 * 86400, httponly=True, secure=secure,
        samesite="none" if secure else "lax",
    )  # fmt: skip
    return response


def _settle_in() -> None:
    """Make now what the first requests would wait on, and take what is made so far out of the
    garbage collector's sight.

    Every full collection walks every object the collector tracks; the modules, regexes and
    networks loaded at start are about 100k of them. Under load the pixel's short-lived objects
    set off a full collection every second or so, each 40–50 ms on the event loop: at half of
    peak load (11k req/s, SQLite, h2load) the p99 was 47 ms with them and 12 ms once frozen.
    Garbage is collected first, so that only what lives is frozen.
    """
    clients.warm()
    gc.collect()
    gc.freeze()


class App:
    """Dispatches ``/o/`` and ``/c/`` to the raw tracking routes, all else to Starlette."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tracking = TrackingRoutes(
            services.signer,
            services.writer,
            services.db,
            trusted=services.settings.trusted_proxies,
            classifier=services.classifier,
            clicked=services.settler.poke,
            keep=services.settings.minimising,
        )

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            services.writer.start()
            services.settler.start()
            services.deliverer.start()
            services.notifier.start()
            services.dispatcher.start()
            services.keeper.start()
            services.retention.start()
            refresher = Refresher(services.apple).start()
            relay = await RelayServer.start(services) if services.settings.smtp_listen else None
            _settle_in()
            try:
                yield
            finally:
                if relay is not None:  # first: what it is queueing commits before the writer stops
                    await relay.stop()
                refresher.stop()
                # At once, so that SIGTERM ends within 10 s: attempts in flight get 4 s, a round
                # in progress finishes (its reads run on threads), then the writer commits what
                # is queued and drains the spool for up to 3 s.
                await asyncio.gather(
                    services.retention.stop(), services.keeper.stop(),
                    services.dispatcher.stop(), services.notifier.stop(),
                    services.deliverer.stop(), services.settler.stop(),
                )  # fmt: skip
                await services.writer.stop()
                services.db.close()

        self.starlette = Starlette(
            routes=[
                *API_ROUTES,
                *WEBHOOK_ROUTES,
                *PRIVACY_ROUTES,
                *STREAM_ROUTES,
                Route("/robots.txt", robots),
                *OPS_ROUTES,
                Route("/self/{mark}", mark_browser),
                *UNSUBSCRIBE_ROUTES,
                *MUTE_ROUTES,
                *CONSENT_ROUTES,
                *AUTH_ROUTES,
                *KEY_ROUTES,
                *DASHBOARD_ROUTES,
                Mount("/static", StaticFiles(packages=[("mailbeacon.web", "static")])),
            ],
            lifespan=lifespan,
        )
        self.starlette.state.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/o/"):
                await self.tracking.pixel(scope, receive, send)
                return
            if path.startswith("/c/"):
                await self.tracking.click(scope, receive, send)
                return
        await self.starlette(scope, receive, send)
