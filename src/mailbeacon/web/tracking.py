"""The tracking routes, as raw ASGI: a framework route here would halve the pixel's throughput
(RESEARCH.md §4: Starlette 13.7k/s against 31k–38k/s for a raw app on granian).

``GET|HEAD /o/{token}.gif`` always answers the GIF; ``GET|HEAD /c/{token}`` redirects only to the
URL registered for that token's link. A hit is answered after it is committed, or spooled when the
database is out of reach (``store.spool``); when both fail the route still answers and the failure
goes to the log. While hits are spooled the routes read nothing from the database: a link seen
before redirects from the node's cache, and one not seen answers 503 with ``Retry-After``; a hit
of a message not seen before is classified without what is known of its message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import quote

import anyio.to_thread

from mailbeacon.classify.pipeline import Classifier
from mailbeacon.classify.rules import Kind, MessageFacts
from mailbeacon.ingest.hits import KEPT_HEADERS, Network, client_ip, hit_row
from mailbeacon.ingest.messages import KnownMessages, read_facts
from mailbeacon.privacy import KEEP_ALL, Minimising
from mailbeacon.store import queries
from mailbeacon.store.db import Database, DatabaseError
from mailbeacon.store.writer import Writer
from mailbeacon.tracking.tokens import Signer, Target

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# The smallest transparent GIF: 1×1, one transparent colour, 43 bytes.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_CACHE = [
    (b"cache-control", b"no-cache, no-store, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-robots-tag", b"noindex"),
]
PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(GIF)).encode()),
    *_NO_CACHE,
]
NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"10"), *_NO_CACHE]
NOT_ALLOWED_HEADERS = [*NOT_FOUND_HEADERS[:2], (b"allow", b"GET, HEAD"), *_NO_CACHE]
UNAVAILABLE_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", b"39"),
    (b"retry-after", b"30"),
    *_NO_CACHE,
]
UNAVAILABLE = b"this link works again in a few minutes\n"
LINK_CACHE_SIZE = 100_000
SELF_COOKIE = "mb_self"  # set by /self/{mark} in the sender's own browser


class _Unknown(Exception):
    """The database cannot be asked."""


class TrackingRoutes:
    def __init__(
        self,
        signer: Signer,
        writer: Writer,
        db: Database,
        *,
        trusted: Sequence[Network],
        classifier: Classifier,
        clicked: Callable[[], None] = lambda: None,
        keep: Minimising = KEEP_ALL,
    ) -> None:
        self.signer = signer
        self.writer = writer
        self.db = db
        self.trusted = trusted
        self.classifier = classifier
        self.clicked = clicked  # a click may settle earlier hits (classify.settle)
        self.keep = keep  # what is kept of who fetched (privacy)
        self._links: dict[tuple[str, int], str] = {}  # links never change once registered
        self._messages = KnownMessages()

    async def pixel(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, NOT_ALLOWED_HEADERS, b"not found\n", method)
            return
        path: str = scope["path"]
        if path.endswith(".gif"):
            target = self.signer.verify("o", path[3:-4])
            if target is not None:
                await self._record(scope, target, "open")
        await _answer(send, 200, PIXEL_HEADERS, GIF, method)

    async def click(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, NOT_ALLOWED_HEADERS, b"not found\n", method)
            return
        target = self.signer.verify("c", scope["path"][3:])
        try:
            url = await self._link(target.message_id, target.link) if target is not None else None
        except _Unknown:
            await _answer(send, 503, UNAVAILABLE_HEADERS, UNAVAILABLE, method)
            return
        if target is None or url is None:
            await _answer(send, 404, NOT_FOUND_HEADERS, b"not found\n", method)
            return
        await self._record(scope, target, "click")
        self.clicked()
        # Registered URLs have no control characters (see tracking.register); non-ASCII is
        # percent-encoded so that the header stays plain ASCII.
        location = quote(url, safe="!#$%&'()*+,/:;=?@[]~-._").encode("ascii")
        headers = [(b"location", location), (b"content-length", b"0"), *_NO_CACHE]
        await _answer(send, 302, headers, b"", method)

    async def _link(self, message_id: str, position: int | None) -> str | None:
        """The registered URL (None: no such link); ``_Unknown`` when the database cannot say."""
        if position is None:
            return None
        key = (message_id, position)
        url = self._links.get(key)
        if url is None:
            if self.writer.spooling:
                raise _Unknown
            try:
                url = await anyio.to_thread.run_sync(
                    self.db.read, queries.link_url, message_id, position
                )
            except DatabaseError:
                log.exception("could not look up a link")
                raise _Unknown from None
            if url is not None:
                if len(self._links) >= LINK_CACHE_SIZE:
                    self._links.clear()
                self._links[key] = url
        return url

    async def _message(self, message_id: str) -> MessageFacts | None:
        if self.writer.spooling:  # the database is out of reach: no read waits on it
            return None
        try:
            facts = await anyio.to_thread.run_sync(self.db.read, read_facts, message_id)
        except DatabaseError:
            log.exception("could not read a message; its hit is classified without it")
            return None
        self._messages.put(message_id, facts)
        return facts

    async def _record(self, scope: Scope, target: Target, kind: Kind) -> None:
        headers: dict[str, str] = {}
        mark = None
        for name, value in scope["headers"]:
            if name in KEPT_HEADERS:
                headers[name.decode("latin-1")] = value.decode("utf-8", "replace")
            elif name == b"cookie":
                mark = self._mark(value)
        peer = scope["client"][0] if scope.get("client") else ""
        ip = client_ip(peer, headers.get("x-forwarded-for"), self.trusted)
        now = time.time_ns() // 1000
        message_id = target.message_id
        if message_id in self._messages:
            message = self._messages.get(message_id)
        else:
            message = await self._message(message_id)
        row = hit_row(
            self.classifier, target, kind, at=now, method=scope["method"], ip=ip,
            headers=headers, message=message, self_user=mark, keep=self.keep,
        )  # fmt: skip
        try:
            await self.writer.add_hit(row)
        except Exception:
            # The request is answered all the same (a pixel never fails visibly); the writer has
            # logged why the hit could not be stored.
            log.warning("answered a hit (%s) that could not be stored", kind)

    def _mark(self, cookie: bytes) -> int | None:
        """The user whose browser this is, from the mark ``/self/…`` left in it."""
        for part in cookie.decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SELF_COOKIE:
                return self.signer.verify_mark(value)
        return None


async def _answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, method: str
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
