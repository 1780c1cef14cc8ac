"""Every route the application serves, read from the application itself: a test that walks them
(the security tests) covers a route added later without being told of it."""

from __future__ import annotations

import re

from starlette.routing import Mount, Route

from mailbeacon.web.app import App


def served_routes(app: App) -> list[tuple[str, str]]:
    """(method, path template) of every route the application serves."""
    # The tracking routes are raw ASGI in front of Starlette (web/app.py), matched by prefix.
    found = [(m, p) for m in ("GET", "HEAD") for p in ("/o/{token}.gif", "/c/{token}")]
    for route in app.starlette.routes:
        if isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
        elif isinstance(route, Mount):
            found.append(("GET", route.path + "/{path}"))
    # Signing in and out last: they would end the session that the other requests use.
    return sorted(found, key=lambda route: route[1] in ("/login", "/logout"))


def api_routes(app: App) -> list[tuple[str, str]]:
    return [(m, p) for m, p in served_routes(app) if p.startswith("/api/") and "openapi" not in p]


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]*\}", lambda _: value, template)
