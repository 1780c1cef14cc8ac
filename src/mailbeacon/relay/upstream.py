"""The upstream SMTP server that queued mail is handed to, and handing one copy to it.

``--upstream smtp://user:pass@host:port`` names it. Over ``smtp://`` the connection is upgraded
with STARTTLS whenever the server offers it; ``smtps://`` speaks TLS from the first byte. A
password never crosses a network in the clear: to a host that is not this machine, a server
that does not offer STARTTLS is refused before the password is sent. On a loopback connection
(a local Postfix with its self-signed "snakeoil" certificate, typically) the certificate is not
checked, since nothing can sit between the two ends; elsewhere it is, against the system's
trusted authorities (``SSL_CERT_FILE`` names others, e.g. a private CA).

The outcome of an attempt is one of three: the server accepted the copy; it failed for now (a
``4xx`` reply, no connection, a timeout, a TLS or login failure: ours to try again); or it refused
the copy for good (a ``5xx`` reply to MAIL, RCPT or DATA: a bounce).

DKIM: a copy is signed, if at all, here, after it was instrumented: a signature made before the
HTML part is rewritten no longer verifies (RESEARCH.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib
import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailbeacon.accounts import now_us

TIMEOUT = 30.0  # seconds, for connecting and for each command
QUIT_TIMEOUT = 5.0  # the copy is accepted by then: saying goodbye must not hold up recording it
PORTS = {"smtp": 587, "smtps": 465}
# The headers a DKIM signature covers when the copy has them: those that say who sent it, to
# whom, what it is and how to read it, and the one-click unsubscribe pair (RFC 8058 asks for
# List-Unsubscribe-Post to be signed). From is signed once more than it appears, so that a
# second From cannot be added without breaking the signature (RFC 6376 §8.15).
SIGNED_HEADERS = (
    "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
    "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "List-Id",
    "List-Unsubscribe", "List-Unsubscribe-Post",
)  # fmt: skip
MIN_KEY_BITS = 1024  # what verifiers accept at least (dkimpy's default ``minkey``)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Upstream:
    """Where copies go, parsed from ``--upstream``; ``str()`` never shows the password."""

    scheme: Literal["smtp", "smtps"]
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Policy, decided from the host: refuse to log in without TLS, check the certificate.
    require_tls: bool = False
    verify: bool = True

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """``smtp://[user[:password]@]host[:port]`` or ``smtps://…``; raises ``ValueError``
        with a message that says what is wrong (and never the password)."""
        shape = "smtp://[user:password@]host[:port] or smtps://…"
        parts = urlsplit(url.strip())
        if parts.scheme not in PORTS:
            raise ValueError(f"expected {shape}, not a {parts.scheme or 'bare'!r} URL")
        scheme: Literal["smtp", "smtps"] = "smtps" if parts.scheme == "smtps" else "smtp"
        if not parts.hostname:
            raise ValueError(f"no host: expected {shape}")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"unexpected path or query after the host: expected {shape}")
        try:
            port = PORTS[scheme] if parts.port is None else parts.port
        except ValueError as exc:
            raise ValueError(f"bad port ({exc}): expected {shape}") from None
        if port == 0:
            raise ValueError(f"bad port (0): expected {shape}")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None):
            raise ValueError("give both a user name and a password, or neither")
        loopback = _is_loopback(parts.hostname)
        return cls(
            scheme, parts.hostname, port, username, password,
            require_tls=password is not None and not loopback, verify=not loopback,
        )  # fmt: skip

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"


@dataclass(frozen=True)
class Accepted:
    """The upstream server took the copy: ``at`` is that moment (µs)."""

    at: int
    reply: str


@dataclass(frozen=True)
class Deferred:
    """It failed for now: try again later."""

    error: str


@dataclass(frozen=True)
class Refused:
    """Refused for good. ``recipient``: the refusal was about the recipient (at RCPT or DATA),
    not about the sender, so they should not be sent to again."""

    error: str
    recipient: bool


Outcome = Accepted | Deferred | Refused


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"


def tls_context(upstream: Upstream) -> ssl.SSLContext:
    """The context for the upstream's TLS: the system's authorities, or none on loopback."""
    context = ssl.create_default_context()
    if not upstream.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def helo_name(public_url: str) -> str:
    """The name to greet the upstream server with: the tracking domain (an address literal for
    an IP), rather than ``socket.getfqdn()``, which may wait on DNS."""
    host = urlsplit(public_url).hostname or "localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"


class Session:
    """A connection to the upstream server kept open from one copy to the next: connecting,
    STARTTLS and the login cost more than a copy does. ``send`` never raises for what the server
    or the network does; after a failure of the connection itself, the next copy reconnects."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        helo: str = "localhost",
        tls: ssl.SSLContext | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.upstream = upstream
        self.helo = helo
        self.tls = tls or tls_context(upstream)
        self.timeout = timeout
        self._smtp: aiosmtplib.SMTP | None = None

    async def send(self, mail_from: str, rcpt_to: str, data: bytes) -> Outcome:
        try:
            if self._smtp is None or not self._smtp.is_connected:
                self._drop()
                self._smtp = aiosmtplib.SMTP(
                    hostname=self.upstream.host,
                    port=self.upstream.port,
                    local_hostname=self.helo,
                    timeout=self.timeout,
                    use_tls=self.upstream.scheme == "smtps",
                    start_tls=False,  # decided in _open, once the server has said what it offers
                    tls_context=self.tls,
                )
                refused = await _open(self._smtp, self.upstream)
                if refused is not None:
                    self._drop()
                    return refused
            return await _transaction(self._smtp, mail_from, rcpt_to, data)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            await self._after(exc)
            return _failure(self.upstream, exc)

    async def _after(self, exc: Exception) -> None:
        """A refused copy leaves the connection usable once reset; anything else drops it."""
        if self._smtp is not None and isinstance(
            exc,
            aiosmtplib.SMTPRecipientRefused
            | aiosmtplib.SMTPSenderRefused
            | aiosmtplib.SMTPDataError,
        ):
            try:
                await self._smtp.rset()
                return
            except (aiosmtplib.SMTPException, OSError):
                pass
        self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def close(self) -> None:
        """Say goodbye (briefly: every copy sent is already accepted) and close."""
        smtp = self._smtp
        sock = smtp.transport.get_extra_info("socket") if smtp and smtp.transport else None
        try:
            if smtp is not None and smtp.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await smtp.quit(timeout=QUIT_TIMEOUT)
        finally:  # also when cancelled while saying goodbye (a deliverer stopping)
            self._drop()
        # Over TLS the socket closes after the TLS goodbye, a few loop turns later: wait for it
        # (briefly), so that no connection outlives its event loop.
        for _ in range(100):
            if sock is None or sock.fileno() == -1:
                break
            await asyncio.sleep(0.01)


async def send(
    upstream: Upstream,
    mail_from: str,
    rcpt_to: str,
    data: bytes,
    *,
    helo: str = "localhost",
    tls: ssl.SSLContext | None = None,
    timeout: float = TIMEOUT,
) -> Outcome:
    """Hand one copy to the upstream server on a connection of its own."""
    session = Session(upstream, helo=helo, tls=tls, timeout=timeout)
    try:
        return await session.send(mail_from, rcpt_to, data)
    finally:
        await session.close()


async def _open(smtp: aiosmtplib.SMTP, upstream: Upstream) -> Outcome | None:
    """Connect, upgrade to TLS and log in; a Deferred when the password would go in the clear."""
    await smtp.connect()
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    if upstream.scheme == "smtp":
        if smtp.supports_extension("starttls"):
            await smtp.starttls()
        elif upstream.require_tls:
            return Deferred(
                f"{upstream.host} does not offer STARTTLS: the password is not sent in the "
                "clear (use smtps:// if it speaks TLS on connect)"
            )
    if upstream.username is not None and upstream.password is not None:
        await smtp.login(upstream.username, upstream.password)
    return None


async def _transaction(smtp: aiosmtplib.SMTP, mail_from: str, rcpt_to: str, data: bytes) -> Outcome:
    """MAIL, RCPT and DATA, one at a time rather than through ``sendmail``, which passes over
    the whole copy once more only to count its size (a third of delivery's CPU on a 100 KB
    campaign, measured with py-spy); ``_wire_size`` counts it without copying."""
    smtputf8 = not (mail_from + rcpt_to).isascii()
    options = ["SMTPUTF8"] if smtputf8 else []
    if not data.isascii() and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if smtp.supports_extension("size"):
        options.insert(0, f"SIZE={_wire_size(data)}")
    if smtputf8 and not smtp.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    encoding = "utf-8" if smtputf8 else "ascii"
    await smtp.mail(mail_from, options=options, encoding=encoding)
    await smtp.rcpt(rcpt_to, encoding=encoding)
    reply = await smtp.data(data)
    return Accepted(now_us(), reply.message)


def _wire_size(data: bytes) -> int:
    """The copy's size as DATA sends it (RFC 1870): every lone CR or LF becomes CRLF, and it
    ends with one."""
    crlf = data.count(b"\r\n")
    lone = data.count(b"\r") + data.count(b"\n") - 2 * crlf
    ending = 0 if data.endswith((b"\r", b"\n")) else 2
    return len(data) + lone + ending


def _failure(upstream: Upstream, exc: Exception) -> Outcome:
    """What a failed attempt means for the copy. Only the refusals of MAIL, RCPT and DATA are
    about the copy; the rest (connecting, TLS, the login) are about the way there."""
    outcome: Outcome
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        outcome = _refusal(exc.code, exc.message, recipient=True, at="RCPT")
    elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
        outcome = _refusal(exc.code, exc.message, recipient=False, at="MAIL")
    elif isinstance(exc, aiosmtplib.SMTPDataError):
        outcome = _refusal(exc.code, exc.message, recipient=True, at="DATA")
    elif isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        outcome = Deferred(f"{upstream} refused our login: {_reply(exc.code, exc.message)}")
    elif isinstance(exc, aiosmtplib.SMTPNotSupported):  # an address needs SMTPUTF8
        outcome = Refused(f"{upstream} cannot take this copy: {exc}", recipient=False)
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        outcome = Deferred(_reply(exc.code, exc.message))
    elif isinstance(exc, aiosmtplib.SMTPException | OSError):  # refused, reset, timed out, TLS
        outcome = Deferred(f"{upstream}: {str(exc) or type(exc).__name__}")
    else:  # (checked after OSError: a certificate failure is a ValueError too)
        # An address aiosmtplib will not put in a command (CR, LF…): no retry makes it right.
        outcome = Refused(f"cannot send to or from this address: {exc}", recipient=False)
    return outcome


def _refusal(code: int, message: str, *, recipient: bool, at: str) -> Outcome:
    reply = _reply(code, message)
    # RFC 5321 §4.5.3.1.10: a 552 to RCPT ("too many recipients") is to be taken as temporary.
    if 500 <= code < 600 and not (code == 552 and at == "RCPT"):
        return Refused(reply, recipient=recipient)
    return Deferred(reply)


@dataclass(frozen=True)
class Dkim:
    """A DKIM signing key with its selector and domain (``--dkim-*``)."""

    selector: str
    domain: str
    key: bytes = field(repr=False)  # PEM

    @classmethod
    def load(cls, path: Path, selector: str, domain: str) -> Dkim:
        """Read and check the key; raises ``ValueError`` saying what is wrong with it."""
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:  # not PEM, not a key, or protected by a password
            raise ValueError(
                f"{str(path)!r} is not an unencrypted PEM private key: {exc}"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{str(path)!r} is not an RSA key (DKIM signs with rsa-sha256 here)")
        if key.key_size < MIN_KEY_BITS:
            raise ValueError(
                f"{str(path)!r} is a {key.key_size}-bit key; verifiers refuse keys under "
                f"{MIN_KEY_BITS} bits (2048 is usual)"
            )
        return cls(selector, domain, pem)

    def sign(self, data: bytes) -> bytes:
        """The copy with a ``DKIM-Signature`` header in front (relaxed/relaxed)."""
        headers, _ = dkim.rfc822_parse(data)
        present = {name.lower() for name, _ in headers}
        signed = [h.lower().encode() for h in SIGNED_HEADERS if h.lower().encode() in present]
        signature: bytes = dkim.sign(
            data,
            self.selector.encode(),
            self.domain.encode(),
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[*signed, b"from"],
        )
        return signature + data
