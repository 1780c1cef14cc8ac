"""The SMTP submission relay: aiosmtpd on the event loop of ``serve``, beside the HTTP server.

The app's lifespan starts it when ``--smtp-listen`` is set and stops it before the writer, so
that the messages being queued are committed first. Every session must STARTTLS, then AUTH
(PLAIN or LOGIN: the user's email and an API key), before MAIL, RCPT or DATA (530 otherwise):
it is never an open relay. AUTH is refused before STARTTLS on loopback too: a TCP forwarder in
front of the relay (socat, a container port) makes every client look local, and would carry
keys in clear text.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiosmtpd.smtp import SMTP

from mailbeacon.relay import tls
from mailbeacon.relay.handler import Handler

if TYPE_CHECKING:
    from mailbeacon.web.services import Services

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # seconds for the messages being queued when the server stops
SESSION_TIMEOUT = 300.0  # an idle client is dropped after (RFC 5321 §4.5.3.2.7: 5 minutes)


class _Quiet(logging.Filter):
    """aiosmtpd warns on every successful AUTH that an attribute it sets itself is deprecated."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


_QUIET = _Quiet()


class RelayServer:
    def __init__(self, server: asyncio.Server, handler: Handler, sessions: weakref.WeakSet[SMTP]):
        self._server = server
        self._handler = handler
        self._sessions = sessions

    @classmethod
    async def start(cls, services: Services) -> RelayServer:
        settings = services.settings
        if settings.smtp_listen is None:
            raise ValueError("no --smtp-listen address")
        host, port = settings.smtp_listen
        context = tls.server_context(settings)
        # aiosmtpd logs every command at INFO; our handler logs what matters about each message.
        aiosmtpd_log = logging.getLogger("mail.log")
        aiosmtpd_log.setLevel(logging.WARNING)
        aiosmtpd_log.addFilter(_QUIET)
        handler = Handler(services)
        loop = asyncio.get_running_loop()
        hostname = urlsplit(settings.public_url).hostname or "localhost"
        sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

        def session() -> SMTP:
            smtp = SMTP(
                handler,
                hostname=hostname,  # else aiosmtpd looks up the FQDN, for every connection
                ident="mailbeacon",
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                data_size_limit=settings.smtp_max_size,
                timeout=SESSION_TIMEOUT,
                loop=loop,
            )
            sessions.add(smtp)
            return smtp

        server = await loop.create_server(session, host, port)
        log.info("SMTP relay listening on %s:%d", host, port)
        return cls(server, handler, sessions)

    async def stop(self) -> None:
        """Stop listening, let the messages being queued commit, then close every session."""
        self._server.close()
        await self._handler.drain(DRAIN_TIMEOUT)
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("SMTP sessions still open at shutdown")
