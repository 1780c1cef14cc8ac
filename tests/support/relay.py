"""The SMTP relay of a real ``mailbeacon serve``, and two clients: swaks, a real SMTP client, for
what a mail client does, and smtplib writing raw bytes for what an attacker does."""

from __future__ import annotations

import itertools
import signal
import smtplib
import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from mailbeacon import accounts
from mailbeacon.store.db import Database
from tests.support.server import ServerProcess, free_port
from tests.support.upstream import Upstream

_users = itertools.count()


class Queued(NamedTuple):
    """One row of the outbound queue."""

    id: int
    message_id: str | None
    mail_from: str
    rcpt_to: str
    data: bytes


@dataclass(frozen=True)
class User:
    id: int
    email: str
    api_key: str


class Relay:
    """``mailbeacon serve --smtp-listen`` on free loopback ports, with its store at hand."""

    def __init__(
        self,
        data: Path,
        db_url: str,
        secret: str,
        env: Mapping[str, str] | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.smtp_port = free_port()
        self.upstream = upstream  # where the deliverer sends the queue, if anywhere
        self.db = Database(db_url)
        self.db.migrate()  # users are added before serve would have migrated
        self.data = data
        settings = {
            "MAILBEACON_SMTP_LISTEN": f"127.0.0.1:{self.smtp_port}",
            "MAILBEACON_APPLE_EGRESS_REFRESH": "0",
            **({"MAILBEACON_UPSTREAM": upstream.url} if upstream is not None else {}),
            **(env or {}),
        }
        self.server = ServerProcess(data, db_url, secret, env=settings)
        self.url = self.server.url
        self.env = {
            "MAILBEACON_DATA": str(data),
            "MAILBEACON_DB": db_url,
            "MAILBEACON_SECRET": secret,
            "MAILBEACON_APPLE_EGRESS_REFRESH": "0",
        }  # for CLI commands on the same store

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.server.kill(sig)
        self.db.close()

    def user(self, name: str = "alice") -> User:
        """A new user of their own, so that tests sharing a server never see each other's mail."""
        made = self.db.write(accounts.create_user, f"{name}{next(_users)}@example.test")
        return User(made.id, made.email, made.api_key)

    def log(self) -> str:
        return self.server.log.read_text()

    def queued(self, user: User) -> list[Queued]:
        rows = self.db.read(
            lambda conn: conn.execute(
                "SELECT id, message_id, mail_from, rcpt_to, data FROM outbound "
                "WHERE user_id = ? ORDER BY id",
                (user.id,),
            )
        )
        return [Queued(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def queued_to(self, address: str) -> int:
        """Copies queued to an address, whoever sent them."""
        row = self.db.read(
            lambda conn: conn.one("SELECT COUNT(*) FROM outbound WHERE rcpt_to = ?", (address,))
        )
        return int(row[0]) if row else 0

    def swaks(
        self,
        user: User | None,
        to: list[str],
        message: bytes,
        tmp_path: Path,
        *options: str,
        key: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Send ``message`` with swaks: STARTTLS, then AUTH PLAIN as ``user`` (none: no AUTH).

        The relay receives ``message`` as it is, given CRLF line ends (see ``crlf``).
        """
        path = tmp_path / f"message-{next(_users)}.eml"
        # swaks ends the data with CRLF "." CRLF of its own: a last line break of ours would
        # become an empty line more.
        path.write_bytes(message.removesuffix(b"\r\n"))
        command = ["swaks", "--server", "127.0.0.1", "--port", str(self.smtp_port), "--tls"]
        if user is not None:
            command += ["--auth", "PLAIN", "--auth-user", user.email]
            command += ["--auth-password", user.api_key if key is None else key]
        sender = user.email if user is not None else "nobody@example.test"
        command += ["--from", sender, "--to", ",".join(to), "--data", f"@{path}", *options]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    @contextmanager
    def session(self, user: User | None, *, tls: bool = True) -> Iterator[smtplib.SMTP]:
        """An SMTP session after EHLO (and STARTTLS, and AUTH as ``user``), for raw commands."""
        client = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10)
        try:
            client.ehlo("client.example.test")
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # the relay's self-signed certificate
                client.starttls(context=context)
                client.ehlo("client.example.test")
            if user is not None:
                client.login(user.email, user.api_key)
            yield client
        finally:
            client.close()


def raw_data(client: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """DATA with ``data`` sent byte for byte (no dot-stuffing, no line ending fixed), then the
    reply to it."""
    code, reply = client.docmd("DATA")
    assert code == 354, reply
    client.send(data)
    return client.getreply()


def crlf(text: str | bytes) -> bytes:
    """A message written with LF in a test, with the CRLF line ends it has on the wire."""
    data = text.encode() if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
