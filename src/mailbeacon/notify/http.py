"""POSTing to a webhook endpoint without letting its URL reach into the server's own network.

A webhook URL is chosen by a user, and the server POSTs to it: pointed at ``127.0.0.1:5432``, at
a router's admin page or at a cloud's metadata service (``169.254.169.254``, which hands out
credentials), it would turn mailbeacon into a proxy into the network it runs in (SSRF). So the
host is resolved when the connection is made, and if *any* of its addresses is not a public one
(loopback, private, link-local, multicast, reserved, unspecified, carrier-grade NAT, a metadata
address, or one of those inside an IPv6 address), nothing is sent. The connection then goes to
an address just checked, never through a second lookup that a DNS server could answer
differently (DNS rebinding); TLS still names and verifies the host itself. Redirects are never
followed: their target would escape the check.

The operator of a server on a private network allows private addresses with
``--allow-private-webhooks`` (the test suite does, for its receivers on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpcore

TIMEOUT = 15.0  # seconds for the whole exchange, from resolving the host to the answer's status
EXCERPT = 1024  # bytes of an answer's body kept, for the delivery log

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 reached through NAT64, RFC 6052
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
ALLOW = (
    "webhooks are sent to public addresses only, unless the operator allows private ones with "
    "--allow-private-webhooks (MAILBEACON_ALLOW_PRIVATE_WEBHOOKS=1)"
)


class Unreachable(Exception):
    """No answer: the connection was refused, failed or timed out; the message says why."""


class PrivateAddress(Unreachable):
    """The host is, or resolves to, an address webhooks may not be sent to."""


def refusal(address: Address) -> str | None:
    """What kind of non-public address this is (None: a public one, where webhooks may go)."""
    if isinstance(address, ipaddress.IPv6Address):
        inside = address.ipv4_mapped or address.sixtofour
        if inside is None and address in _NAT64:
            inside = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if inside is not None:  # judged by the IPv4 address it reaches
            why = refusal(inside)
            return None if why is None else f"{why} ({inside}) inside an IPv6 address"
    checks = (
        (address in _METADATA, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _SHARED, "a carrier-grade NAT address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((why for refused, why in checks if refused), None)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects to a host only if every address it resolves to is public (or ``allow_private``),
    and then to one of those addresses itself."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, *, allow_private: bool) -> None:
        self._backend = backend
        self.allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception = Unreachable(f"{host} has no address")
        for address in await self._resolve(host, port):
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next address, if there is one
        raise failure

    async def _resolve(self, host: str, port: int) -> list[Address]:
        try:  # on a thread: a slow DNS server does not hold up the event loop
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Unreachable(f"{host} does not resolve: {exc.strerror or exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(f[4][0]) for f in found))
        if not self.allow_private:
            for address in addresses:
                if (why := refusal(address)) is not None:
                    named = str(address) if host == str(address) else f"{host} ({address})"
                    raise PrivateAddress(f"{named} is {why}: {ALLOW}")
        return addresses

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    excerpt: bytes  # the start of the body


class Poster:
    """POSTs through the guard, never following a redirect, with connections kept open between
    requests to the same endpoint for as long as it is open (``async with``)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = TIMEOUT,
        tls: ssl.SSLContext | None = None,
        connections: int = 8,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.timeout = timeout
        guarded = GuardedBackend(backend or httpcore.AnyIOBackend(), allow_private=allow_private)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,  # None: certifi's authorities
            max_connections=connections,
            network_backend=guarded,
        )

    async def __aenter__(self) -> Poster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pool.aclose()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The endpoint's answer, whatever its status; ``Unreachable`` when there is none."""
        netloc = urlsplit(url).netloc
        # The Host header from the URL as written (httpcore drops an IPv6 literal's brackets).
        sent = [(b"Host", netloc.encode()), *((k.encode(), v.encode()) for k, v in headers.items())]
        try:
            async with asyncio.timeout(self.timeout):
                async with self._pool.stream("POST", url, headers=sent, content=body) as response:
                    excerpt = b""
                    async for chunk in response.aiter_stream():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT:
                            break  # the rest is not read: the connection is closed, not reused
        except TimeoutError:
            raise Unreachable(f"no answer from {netloc} within {self.timeout:g} s") from None
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            raise Unreachable(f"could not connect to {netloc}: {exc}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException) as exc:
            raise Unreachable(f"{netloc} broke off: {exc or type(exc).__name__}") from None
        return Answer(
            response.status,
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers},
            excerpt[:EXCERPT],
        )
