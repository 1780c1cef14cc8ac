"""Signing in to the dashboard: ``/login``, ``/logout``, and what every page of it checks.

A page handler takes the signed-in user: ``@signed_in async def page(request, me)``. Without a
live session the browser is sent to ``/login?next=<the page>``, and back there once signed in;
``next`` is only ever a path of this site, so that a link to our sign-in page cannot send
anyone elsewhere.

**Cross-site requests.** The session cookie is ``SameSite=Lax``, so browsers do not send it with
another site's POST; every unsafe request of a signed-in page must moreover carry the session's
CSRF token (the form field ``csrf``, or the header ``X-CSRF-Token`` for ``fetch``), and come
from our own origin when the browser says where it comes from (``Origin``, else ``Referer``).
The sign-in form has no session yet: its origin is checked, so that another site cannot sign a
visitor into an account of the attacker's choosing.
"""

from __future__ import annotations

import functools
import hmac
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import anyio.to_thread
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mailbeacon import accounts, sessions
from mailbeacon.web.api import _caller_ip, _services
from mailbeacon.web.views import HEADERS, FormTooLarge, form, render

COOKIE = "mb_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRONG = "Wrong email or password."
# A password check holds 64 MiB for about 0.1 s: a few at a time, so that a flood of sign-ins
# waits its turn rather than taking all the memory.
CONCURRENT_CHECKS = 2


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    email: str
    is_admin: bool
    csrf: str  # the session's token, for the forms of the page


class CsrfRefused(Exception):
    """An unsafe request of a signed-in page that did not come from one of our pages."""


async def current(request: Request) -> SignedIn | None:
    """The user signed in with this request's session cookie, or None."""
    if hasattr(request.state, "me"):  # asked before for this request
        me: SignedIn | None = request.state.me
        return me
    request.state.me = None
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    services = _services(request)
    now = accounts.now_us()
    found = await services.read(sessions.find, token, now=now)
    if found is None:
        return None
    if now - found.last_seen_at >= sessions.TOUCH_EVERY:
        await services.writer.run(sessions.touch, found.id, now=now)
        request.state.touched = token
    me = request.state.me = SignedIn(found.user_id, found.email, found.is_admin, found.csrf)
    return me


def _own_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-case and without the default port; "" if none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from our own pages: its ``Origin``, or
    without one its ``Referer``, is the public URL's origin or the one the request was sent to.
    A request that says neither passes (no browser posts a form that way)."""
    said = request.headers.get("origin") or request.headers.get("referer")
    if said is None:
        return True
    ours = {_own_origin(_services(request).settings.public_url), _own_origin(str(request.url))}
    origin = _own_origin(said)
    return bool(origin) and origin in ours


async def check_csrf(request: Request, me: SignedIn) -> FormData:
    """The request's form, once its CSRF token and origin are checked; raises ``CsrfRefused``
    (``signed_in`` answers it with 403) or ``FormTooLarge`` (413). ``signed_in`` calls it for
    every unsafe request already; a handler calls it again for the form."""
    if not _same_origin(request):
        raise CsrfRefused("the request came from another site")
    fields = await form(request)
    sent = request.headers.get("x-csrf-token") or fields.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), me.csrf.encode()):
        raise CsrfRefused("the form's token is missing or not this session's")
    return fields


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site, else ``/``. Browsers read ``//host``
    and ``/\\host`` as another site, and drop tabs and line breaks before reading a URL."""
    if (
        not value
        or len(value) > 2000
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        return "/"
    return value


def _set_cookie(request: Request, response: Response, token: str, *, clear: bool = False) -> None:
    response.set_cookie(
        COOKIE, token, max_age=0 if clear else sessions.LIFETIME // 1_000_000, path="/",
        httponly=True, samesite="lax",
        secure=_services(request).settings.public_url.startswith("https://"),
    )  # fmt: skip


def _sets_cookie(response: Response) -> bool:
    prefix = COOKIE.encode() + b"="
    return any(k == b"set-cookie" and v.startswith(prefix) for k, v in response.raw_headers)


def _refused(request: Request, me: SignedIn | None) -> Response:
    return render(request, "app/refused.html", status=403, me=me, nav=None)


def _too_large() -> Response:
    return PlainTextResponse("This form is too large.\n", status_code=413, headers=HEADERS)


PageHandler = Callable[[Request, SignedIn], Awaitable[Response]]


def signed_in(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A page for signed-in users only; its unsafe requests are CSRF-checked before it runs."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        me = await current(request)
        if me is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            # After a form's POST, going back to its URL with a GET would be no use.
            query = "?" + urlencode({"next": here}) if request.method in ("GET", "HEAD") else ""
            return RedirectResponse("/login" + query, status_code=303)
        try:
            if request.method not in SAFE_METHODS:
                await check_csrf(request, me)
            response = await handler(request, me)
        except CsrfRefused:
            return _refused(request, me)
        except FormTooLarge:
            return _too_large()
        touched = getattr(request.state, "touched", None)
        if touched is not None and not _sets_cookie(response):  # logout clears it instead
            _set_cookie(request, response, touched)  # the cookie's expiry slides too
        return response

    return endpoint


def _login_page(
    request: Request, *, next_path: str, email: str = "", error: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    return render(
        request, "app/login.html", status=status, me=None, nav=None, next=next_path,
        email=email, error=error,
    )  # fmt: skip


async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if await current(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, next_path=next_path)


def _password_checks(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    if not hasattr(state, "password_checks"):  # made on the server's event loop
        state.password_checks = anyio.CapacityLimiter(CONCURRENT_CHECKS)
    limiter: anyio.CapacityLimiter = state.password_checks
    return limiter


def _text(fields: FormData, name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


async def login(request: Request) -> Response:
    """Check the password; on success start a session and go where the user was going."""
    if not _same_origin(request):
        return _refused(request, None)
    try:
        fields = await form(request)
    except FormTooLarge:
        return _too_large()
    email, password = _text(fields, "email").strip(), _text(fields, "password")
    next_path = safe_next(_text(fields, "next"))
    services = _services(request)
    attempt = sessions.Attempt.of(email, _caller_ip(request) or "", at=accounts.now_us())
    wait = await services.writer.run(sessions.throttle, attempt)
    if wait is not None:
        response = _login_page(
            request, next_path=next_path, email=email, status=429,
            error=f"Too many failed sign-ins: try again in {math.ceil(wait / 60)} minutes.",
        )  # fmt: skip
        response.headers["Retry-After"] = str(wait)
        return response
    match = await anyio.to_thread.run_sync(
        lambda: services.db.read(accounts.check_password, email, password),
        limiter=_password_checks(request),
    )
    if match is None:
        return _login_page(request, next_path=next_path, email=email, error=WRONG, status=401)
    session = await services.writer.run(sessions.sign_in, attempt, match)
    response = RedirectResponse(next_path, status_code=303)
    _set_cookie(request, response, session.token)
    return response


@signed_in
async def logout(request: Request, me: SignedIn) -> Response:
    """End the session on the server too: a copy of the cookie is worth nothing after it."""
    await _services(request).writer.run(sessions.end, request.cookies[COOKIE])
    response = RedirectResponse("/login", status_code=303)
    _set_cookie(request, response, "", clear=True)
    return response


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
