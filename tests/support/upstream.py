"""A real upstream SMTP server for tests: aiosmtpd in a subprocess on a loopback port.

Every message it accepts goes into a Maildir in the test's directory, byte for byte as it came
(no ``Received`` or ``X-Peer`` added), with its envelope beside it::

    upstream = Upstream(tmp_path, tls=True, auth=("relay", "s3cret"), reject={"gone@x.test"})
    upstream.start()
    ... deliver to upstream.url (smtp://relay:s3cret@127.0.0.1:PORT), trusting upstream.cert ...
    assert upstream.messages() == [data]
    upstream.stop()   # down: connections are refused
    upstream.start()  # back, on the same port, with the same mailbox

Options: ``tls`` requires STARTTLS (with a self-signed certificate for ``127.0.0.1`` and
``localhost``, generated into the directory: ``cert``); ``implicit_tls`` serves TLS from the first
byte (``smtps://``); ``auth`` requires AUTH PLAIN or LOGIN with that user and password (over TLS
when ``tls`` is on); ``reject`` refuses those recipients for good (``550``), ``defer`` for now
(``451``). They are attributes: a change takes effect at the next ``start()``.

A subprocess, not a thread: the server is stopped the way a real one goes down, and nothing it
does shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import mailbox
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

READY = "ready"


@dataclass(frozen=True)
class Delivery:
    """One accepted message: its envelope and its bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certificate(
    directory: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")
) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` (names or addresses), and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Upstream:
    """An SMTP server to deliver to; see the module's docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        tls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        reject: Iterable[str] = (),
        defer: Iterable[str] = (),
        processes: int = 1,
    ) -> None:
        self.dir = directory / "upstream"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.maildir = self.dir / "Maildir"
        self.envelopes = self.dir / "envelopes.jsonl"
        self.log = self.dir / "server.log"
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.reject = set(reject)
        self.defer = set(defer)
        self.processes = processes  # more than one (sharing the port) for benchmarks
        self.port = _free_port()
        self.cert, self.key = make_certificate(self.dir)
        self.running: list[subprocess.Popen[str]] = []

    @property
    def url(self) -> str:
        """The URL to give ``--upstream``, credentials included."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = ""
        if self.auth is not None:
            user = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@"
        return f"{scheme}://{user}127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        """Serve (again) on the same port; return once it accepts connections."""
        if self.running:
            raise RuntimeError("the upstream server is already running")
        config = {
            "port": self.port,
            "maildir": str(self.maildir),
            "envelopes": str(self.envelopes),
            "cert": str(self.cert),
            "key": str(self.key),
            "tls": self.tls,
            "implicit_tls": self.implicit_tls,
            "auth": self.auth,
            "reject": sorted(self.reject),
            "defer": sorted(self.defer),
        }
        for _ in range(self.processes):
            with self.log.open("a") as log:
                process = subprocess.Popen(
                    [sys.executable, __file__, json.dumps(config)],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            self.running.append(process)
            assert process.stdout is not None
            line = process.stdout.readline().strip()  # the child says so once it listens
            if line != READY:
                self.stop()
                raise RuntimeError(f"the upstream server did not start: {self.log.read_text()}")
        return self

    def stop(self) -> None:
        """Go down: new connections are refused until ``start()``."""
        running, self.running = self.running, []
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def deliveries(self) -> list[Delivery]:
        """Everything accepted so far, in the order it was accepted."""
        if not self.envelopes.exists():
            return []
        box = mailbox.Maildir(self.maildir, create=False)
        found = []
        for line in self.envelopes.read_text().splitlines():
            entry = json.loads(line)
            found.append(
                Delivery(entry["mail_from"], entry["rcpt_tos"], box.get_bytes(entry["key"]))
            )
        return found

    def messages(self) -> list[bytes]:
        """The bytes of every accepted message, in order."""
        return [d.data for d in self.deliveries()]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[bytes]:
        """The messages, once there are at least ``count`` (for a server delivering on its own)."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} messages arrived upstream")
            time.sleep(0.05)
        return found

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the server, in its own process ---------------------------------------------------------


def _serve(config: dict[str, Any]) -> None:
    box = mailbox.Maildir(config["maildir"], create=True)
    reject, defer = set(config["reject"]), set(config["defer"])

    class Handler:
        # aiosmtpd calls its hooks by these names.
        async def handle_RCPT(  # noqa: N802
            self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
        ) -> str:
            if address in reject:
                return f"550 5.1.1 <{address}>: no such mailbox here"
            if address in defer:
                return f"451 4.3.0 <{address}>: try again later"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"

        async def handle_DATA(  # noqa: N802
            self, server: SMTP, session: Session, envelope: Envelope
        ) -> str:
            data = envelope.original_content or b""
            key = box.add(data)
            entry = {"key": key, "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
            with open(config["envelopes"], "a") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
            return f"250 2.0.0 OK queued as {key}"

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        user, password = config["auth"]
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        # A refusal must not be "handled", or aiosmtpd sends no reply (RESEARCH.md §5).
        return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config["cert"], config["key"])
    kwargs: dict[str, Any] = {"hostname": "upstream.test", "decode_data": False}
    if config["tls"]:
        kwargs |= {"tls_context": context, "require_starttls": True}
    if config["auth"]:
        kwargs |= {
            "authenticator": authenticator,
            "auth_required": True,
            # aiosmtpd only knows of TLS it started itself (STARTTLS): over implicit TLS it
            # would never offer AUTH if told to require TLS for it.
            "auth_require_tls": bool(config["tls"]),
        }

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        server = await loop.create_server(
            lambda: SMTP(Handler(), **kwargs),
            "127.0.0.1",
            config["port"],
            ssl=context if config["implicit_tls"] else None,
            reuse_port=True,  # several processes may serve one port (benchmarks)
        )
        print(READY, flush=True)
        await stopped.wait()
        server.close()

    asyncio.run(main())


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
