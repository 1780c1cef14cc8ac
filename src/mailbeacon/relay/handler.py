"""The relay's side of the SMTP conversation: who may send (AUTH), from and to whom (MAIL, RCPT),
and what (DATA), handed to ``submission.submit``.

aiosmtpd runs the protocol itself: STARTTLS, SIZE, dot-unstuffing, and ending DATA only at
``<CRLF>.<CRLF>`` (1.4.5's fix for SMTP smuggling, CVE-2024-27305). These hooks add what a
submission relay needs on top. aiosmtpd finds them by name: hence ``handle_MAIL`` and the like.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING, NamedTuple

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, TLSSetupException, auth_mechanism

from mailbeacon import accounts
from mailbeacon.ingest.hits import normalise_ip
from mailbeacon.relay.submission import Submission, message_id, refusal, submit
from mailbeacon.store.db import DatabaseError

if TYPE_CHECKING:
    from mailbeacon.web.services import Services

log = logging.getLogger(__name__)

# RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients; past that a 452 makes the
# client send the others in another transaction.
MAX_RECIPIENTS = 100
# Every recipient's copy is kept in the queue (and a tracked one is built in memory): a 25 MB
# message to 100 people would be 2.5 GB. Past this, the client is told to split the message.
MAX_QUEUED_BYTES = 512 * 1024 * 1024


class Login(NamedTuple):
    """Who authenticated on a session."""

    user_id: int
    email: str


class Handler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._busy = 0  # DATA commands being queued
        self._idle = asyncio.Event()
        self._idle.set()

    # --- AUTH: the user's email and one of their API keys ---------------------------------------

    @auth_mechanism("PLAIN")
    async def auth_plain(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616: base64 of ``authzid NUL email NUL key``, on the AUTH line or after a 334."""
        answer = await _answer(server, args, "")
        if answer is None:
            return AuthResult(success=False, handled=True)  # the reply is sent
        parts = answer.split(b"\0")
        if len(parts) != 3:
            await server.push("501 5.5.2 Cannot split the PLAIN answer")
            return AuthResult(success=False, handled=True)
        return await self._check(server, parts[1], parts[2])

    @auth_mechanism("LOGIN")
    async def auth_login(self, server: SMTP, args: list[str]) -> AuthResult:
        """The email (on the AUTH line or asked for), then the key, each in base64."""
        email = await _answer(server, args, "Username:")
        if email is None:
            return AuthResult(success=False, handled=True)
        key = await _answer(server, [], "Password:")
        if key is None:
            return AuthResult(success=False, handled=True)
        return await self._check(server, email, key)

    async def _check(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        email = login.decode("utf-8", "replace")[:254]
        try:
            user_id = await self.services.read(
                accounts.login, email, password.decode("utf-8", "replace")
            )
        except DatabaseError:
            log.exception("AUTH: the store cannot be read")
            return AuthResult(
                success=False, handled=False, message="454 4.7.0 Try again later: store unavailable"
            )
        if user_id is None:
            log.warning("AUTH refused for %r from %s", email, _client_ip(server))
            # Not "handled": aiosmtpd then answers 535; a handled refusal gets no answer at all
            # and the client hangs (RESEARCH.md §5).
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=Login(user_id, email))

    # --- the envelope (aiosmtpd refuses MAIL, RCPT and DATA before AUTH with 530) ---------------

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (why := _bad_address(address)) is not None:
            return f"553 5.1.7 {why}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (why := _bad_address(address)) is not None:
            return f"553 5.1.3 {why}"
        if address.lower() in (r.lower() for r in envelope.rcpt_tos):
            return "250 2.1.5 OK, already a recipient"  # one copy each
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 At most {MAX_RECIPIENTS} recipients a message; send the rest again"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    # --- DATA ---------------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        login = session.auth_data
        if not isinstance(login, Login) or envelope.mail_from is None:  # aiosmtpd saw to both
            return "503 5.5.1 AUTH and MAIL first"
        raw = envelope.original_content or b""
        if (why := refusal(raw)) is not None:
            log.warning("refused %s from user %d: %s", message_id(raw), login.user_id, why)
            return f"554 5.6.0 {why}"
        if len(raw) * len(envelope.rcpt_tos) > MAX_QUEUED_BYTES:
            return (
                f"552 5.3.4 {len(raw)} bytes to {len(envelope.rcpt_tos)} recipients is more than "
                f"{MAX_QUEUED_BYTES} bytes to queue; send it to fewer recipients at a time"
            )
        submission = Submission(
            user_id=login.user_id,
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            client_ip=_client_ip(server),
        )
        self._busy += 1
        self._idle.clear()
        try:
            relayed = await submit(self.services, submission)
        except Exception:
            log.exception("could not queue %s from user %d", message_id(raw), login.user_id)
            return "451 4.3.0 Could not queue the message; try again later"
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()
        count = len(relayed.copies)
        how = "tracked" if relayed.tracked else "untracked"
        return f"250 2.0.0 Queued: {count} {how} {'copy' if count == 1 else 'copies'}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):  # e.g. a client that refused the certificate
            log.info("a TLS handshake failed: %r", error.__cause__)
        else:
            log.exception("SMTP session failed", exc_info=error)
        return "451 4.3.0 Internal error; try again later"

    async def drain(self, timeout: float) -> None:
        """Wait for the messages being queued (at most ``timeout`` seconds)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("stopping with %d messages still being queued", self._busy)


async def _answer(server: SMTP, args: list[str], challenge: str) -> bytes | None:
    """The client's decoded answer: given on the AUTH line (RFC 4954 §4's initial response), or
    to a 334 challenge. None when it was not valid base64 (and the client has been told)."""
    if len(args) > 1:
        if args[1] == "=":  # an empty initial response
            return b""
        try:
            return base64.b64decode(args[1], validate=True)
        except binascii.Error:
            await server.push("501 5.5.2 Cannot decode base64")
            return None
    answer = await server.challenge_auth(challenge)
    return answer if isinstance(answer, bytes) else None


def _bad_address(address: str) -> str | None:
    """Why an address cannot go into an upstream MAIL or RCPT command, or None.

    aiosmtpd's parser keeps CR, LF and NUL inside an address; written into the upstream command
    they would end it early and start another (header and command injection, RESEARCH.md §3).
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in address):
        return "Control characters (CR, LF, NUL...) are not allowed in an address"
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        return "An address needs a local part and a domain: name@example.com"
    return None


def _client_ip(server: SMTP) -> str:
    peer = server.session.peer if server.session is not None else None
    host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
    return normalise_ip(host) or host
