"""Delivery: queued copies go to a real upstream SMTP server, once, and their fate is recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
import ssl
import time
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtplib.protocol import normalize_message_line_endings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mailbeacon import reports
from mailbeacon.accounts import now_us
from mailbeacon.relay.deliverer import BACKOFF, JITTER, SECOND, Deliverer, retry_delay
from mailbeacon.relay.queue import Outgoing, enqueue
from mailbeacon.relay.upstream import Dkim, Upstream, _wire_size
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.store.writer import Writer
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import PEER, Persona
from tests.support.rows import row_of
from tests.support.upstream import Upstream as UpstreamServer

READER = "reader@example.test"
# CRLF, a line that starts with a dot (dot-stuffed on the wire), 8-bit UTF-8 in the body.
DATA = (
    "From: Alice <alice@example.test>\r\n"
    "To: reader@example.test\r\n"
    "Subject: Hello\r\n"
    "Date: Tue, 01 Dec 2026 09:00:00 +0000\r\n"
    "Message-ID: <hello.1@example.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße,\r\n"
    ".a line that starts with a dot\r\n"
    "Alice\r\n"
).encode()
LEASE = 300.0
USER, PASSWORD = "relay", "pä ss/w@rd:"


class Clock:
    """The deliverer's time, set by the test: retries and leases without waiting for them."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpstreamServer]:
    with UpstreamServer(tmp_path, reject={"gone@example.test"}) as found:
        yield found


def queue(
    db: Database, persona: Persona, rcpt: str = READER, data: bytes = DATA, *, tracked: bool = True
) -> tuple[int, str | None]:
    """Register a message for ``rcpt`` (unless untracked) and queue its copy, as the relay
    does; the copy's queue id and the message id."""
    now = now_us()

    def run(conn: Any) -> tuple[int, str | None]:
        message_id = secrets.token_urlsafe(12) if tracked else None
        if message_id is not None:
            message = queries.NewMessage(message_id, rcpt, None, persona.email, "Hello", now, [])
            queries.save_messages(conn, persona.id, [message], now=now)
        [queue_id] = enqueue(
            conn, [Outgoing(persona.id, message_id, persona.email, rcpt, data)], now=now
        )
        return queue_id, message_id

    return db.write(run)


def copy_of(db: Database, queue_id: int) -> dict[str, Any]:
    columns = "state, attempts, next_attempt_at, sent_at, last_error"
    return row_of(db, "FROM outbound WHERE id = ?", (queue_id,), columns)


def suppressed(db: Database, persona: Persona) -> dict[str, str]:
    rows = db.read(
        lambda conn: conn.execute(
            "SELECT address, reason FROM suppressions WHERE user_id = ?", (persona.id,)
        )
    )
    return {str(address): str(reason) for address, reason in rows}


def deliver(db: Database, upstream: Upstream | str | None, **options: Any) -> int:
    """Run a deliverer until nothing is due; the attempts it made."""
    if isinstance(upstream, str):
        upstream = Upstream.parse(upstream)

    async def run() -> int:
        writer = Writer(db)
        writer.start()
        try:
            return await Deliverer(db, writer, upstream, lease=LEASE, **options).deliver_due()
        finally:
            await writer.stop()

    return asyncio.run(run())


def test_a_queued_copy_arrives_upstream_byte_for_byte(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    queue(db, alice)
    assert deliver(db, server.url) == 1
    [delivered] = server.deliveries()
    assert delivered.data == DATA
    assert (delivered.mail_from, delivered.rcpt_tos) == (alice.email, [READER])
    assert deliver(db, server.url) == 0  # sent: never again


def test_the_moment_the_upstream_accepts_it_becomes_the_messages_sending_time(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    queue_id, message_id = queue(db, alice)
    assert message_id is not None
    before = now_us()
    deliver(db, server.url)
    after = now_us()
    copy = copy_of(db, queue_id)
    assert copy["state"] == "sent"
    assert before <= copy["sent_at"] <= after
    assert db.read(queries.message_facts, message_id)[1] == copy["sent_at"]
    found = db.read(reports.message, alice.id, message_id)
    assert found is not None
    assert found["sent_at"] == reports.iso(copy["sent_at"])
    assert found["delivery"] == {
        "state": "sent",
        "attempts": 1,
        "sent_at": reports.iso(copy["sent_at"]),
        "last_error": None,
    }


def test_an_untracked_copy_is_delivered_too(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    queue_id, _ = queue(db, alice, tracked=False)
    deliver(db, server.url)
    assert copy_of(db, queue_id)["state"] == "sent"
    assert server.messages() == [DATA]


def test_it_logs_in_over_starttls(db: Database, alice: Persona, tmp_path: Path) -> None:
    with UpstreamServer(tmp_path, tls=True, auth=(USER, PASSWORD)) as server:
        upstream = Upstream.parse(server.url)
        assert upstream.password == PASSWORD  # percent-decoded
        queue(db, alice)
        deliver(db, upstream)
        assert server.messages() == [DATA]


def test_it_checks_the_certificate_of_a_host_that_is_not_this_machine(
    db: Database, alice: Persona, tmp_path: Path
) -> None:
    """Over the network the upstream's certificate must be trusted: here it is self-signed,
    so only a context that trusts it (as SSL_CERT_FILE would) gets the copy through."""
    with UpstreamServer(tmp_path, tls=True) as server:
        checked = dataclasses.replace(Upstream.parse(server.url), verify=True)
        queue_id, _ = queue(db, alice)
        deliver(db, checked, clock=now_us)
        copy = copy_of(db, queue_id)
        assert (copy["state"], copy["attempts"]) == ("queued", 1)
        assert "CERTIFICATE_VERIFY_FAILED" in copy["last_error"]
        trusting = ssl.create_default_context(cafile=str(server.cert))
        deliver(db, checked, tls=trusting, clock=lambda: now_us() + 3600 * SECOND)
        assert server.messages() == [DATA]


def test_it_speaks_tls_from_the_first_byte_to_an_smtps_upstream(
    db: Database, alice: Persona, tmp_path: Path
) -> None:
    with UpstreamServer(tmp_path, implicit_tls=True, auth=(USER, PASSWORD)) as server:
        assert server.url.startswith("smtps://")
        queue(db, alice)
        deliver(db, server.url)
        assert server.messages() == [DATA]


def test_it_will_not_send_a_password_in_the_clear_over_a_network(
    db: Database, alice: Persona, tmp_path: Path
) -> None:
    assert Upstream.parse("smtp://u:p@mail.example.test").require_tls
    assert not Upstream.parse("smtp://u:p@127.0.0.1:2525").require_tls
    with UpstreamServer(tmp_path, auth=(USER, PASSWORD)) as server:  # no STARTTLS
        remote = dataclasses.replace(Upstream.parse(server.url), require_tls=True)
        queue_id, _ = queue(db, alice)
        deliver(db, remote)
        copy = copy_of(db, queue_id)
        assert (copy["state"], copy["attempts"]) == ("queued", 1)
        assert "does not offer STARTTLS" in copy["last_error"]
        assert server.messages() == []


def test_a_refused_login_is_retried_not_bounced(
    db: Database, alice: Persona, tmp_path: Path
) -> None:
    with UpstreamServer(tmp_path, tls=True, auth=(USER, PASSWORD)) as server:
        wrong = dataclasses.replace(Upstream.parse(server.url), password=PASSWORD[::-1])
        queue_id, _ = queue(db, alice)
        deliver(db, wrong)
        copy = copy_of(db, queue_id)
        assert (copy["state"], copy["attempts"]) == ("queued", 1)
        assert "refused our login: 535" in copy["last_error"]
        assert "w@rd" not in copy["last_error"]
        assert suppressed(db, alice) == {}


def test_mail_waits_while_the_upstream_is_down_and_goes_once_when_it_is_back(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    queue_id, _ = queue(db, alice)
    server.stop()
    start = now_us()
    assert deliver(db, server.url, clock=lambda: start) == 1
    copy = copy_of(db, queue_id)
    assert (copy["state"], copy["attempts"]) == ("queued", 1)
    assert "127.0.0.1" in copy["last_error"]
    assert deliver(db, server.url, clock=lambda: start + 10 * SECOND) == 0  # not due yet
    server.start()
    assert deliver(db, server.url, clock=lambda: start + 2 * 60 * SECOND) == 1
    assert (copy_of(db, queue_id)["state"], copy_of(db, queue_id)["attempts"]) == ("sent", 2)
    assert deliver(db, server.url, clock=lambda: start + 24 * 3600 * SECOND) == 0
    assert server.messages() == [DATA]


def test_a_temporary_refusal_is_retried(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    server.stop()
    server.defer = {READER}
    server.start()
    queue_id, message_id = queue(db, alice)
    start = now_us()
    deliver(db, server.url, clock=lambda: start)
    copy = copy_of(db, queue_id)
    assert copy["state"] == "queued"
    assert copy["last_error"].startswith("451 4.3.0")
    assert message_id is not None
    delivery = db.read(reports.message, alice.id, message_id)["delivery"]  # type: ignore[index]
    assert delivery["state"] == "queued"
    assert delivery["last_error"].startswith("451")
    server.stop()
    server.defer = set()
    server.start()
    deliver(db, server.url, clock=lambda: start + 2 * 60 * SECOND)
    assert copy_of(db, queue_id)["state"] == "sent"
    assert server.messages() == [DATA]


def test_a_permanent_refusal_bounces_and_suppresses_the_recipient(
    client: TestClient, db: Database, alice: Persona, bob: Persona, server: UpstreamServer
) -> None:
    queue_id, message_id = queue(db, alice, "gone@example.test")
    queue(db, alice)
    deliver(db, server.url)
    copy = copy_of(db, queue_id)
    assert (copy["state"], copy["attempts"]) == ("bounced", 1)
    assert copy["last_error"] == "550 5.1.1 <gone@example.test>: no such mailbox here"
    assert suppressed(db, alice) == {"gone@example.test": "bounced"}
    assert len(server.messages()) == 1  # the other recipient's
    assert deliver(db, server.url) == 0  # never tried again

    found = client.get(f"/api/v1/messages/{message_id}", headers=alice.auth).json()
    assert found["delivery"]["state"] == "bounced"
    assert found["delivery"]["last_error"].startswith("550 5.1.1")
    page = client.get("/api/v1/bounces", headers=alice.auth).json()
    assert page["bounces"] == [
        {
            "recipient": "gone@example.test",
            "message_id": message_id,
            "time": reports.iso(copy["next_attempt_at"]),
            "error": copy["last_error"],
        }
    ]
    following = client.get(f"/api/v1/bounces?after={page['next']}", headers=alice.auth).json()
    assert following == {"bounces": [], "next": page["next"]}
    assert client.get("/api/v1/bounces", headers=bob.auth).json()["bounces"] == []
    assert client.get("/api/v1/bounces?after=1", headers=alice.auth).status_code == 400
    # Rates count delivered messages only: the bounced one is in none of them.
    gone = client.get("/api/v1/recipients/gone@example.test/stats", headers=alice.auth).json()
    assert gone["delivered"] == 0
    reader = client.get(f"/api/v1/recipients/{READER}/stats", headers=alice.auth).json()
    assert reader["delivered"] == 1


def test_retries_follow_the_schedule_then_bounce_without_suppressing(
    db: Database, alice: Persona, tmp_path: Path
) -> None:
    """1, 5 and 15 minutes, 1 and 4 hours, then every 8 hours, each ±20%: about three days."""
    assert BACKOFF[:5] == (60, 300, 900, 3600, 4 * 3600)
    assert set(BACKOFF[5:]) == {8 * 3600}
    assert 68 * 3600 < sum(BACKOFF) < 76 * 3600
    with UpstreamServer(tmp_path, defer={READER}) as server:
        queue_id, _ = queue(db, alice)
        clock = Clock(now_us())
        for attempt, delay in enumerate(BACKOFF, start=1):
            deliver(db, server.url, clock=clock)
            copy = copy_of(db, queue_id)
            assert (copy["state"], copy["attempts"]) == ("queued", attempt)
            waited = (copy["next_attempt_at"] - clock.now) / SECOND
            assert delay * (1 - JITTER) <= waited <= delay * (1 + JITTER)
            clock.now = copy["next_attempt_at"]
        deliver(db, server.url, clock=clock)
    copy = copy_of(db, queue_id)
    assert (copy["state"], copy["attempts"]) == ("bounced", len(BACKOFF) + 1)
    assert copy["last_error"].startswith(f"gave up after {len(BACKOFF) + 1} attempts: 451")
    assert suppressed(db, alice) == {}  # the recipient may well exist


def test_the_jitter_spreads_copies_deferred_together() -> None:
    rng = random.Random(4)
    delays = {retry_delay(1, BACKOFF, rng) for _ in range(20)}
    assert len(delays) == 20
    assert retry_delay(len(BACKOFF) + 1, BACKOFF, rng) is None


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"."]), max_size=12).map(b"".join))
def test_the_size_announced_is_the_size_data_sends(data: bytes) -> None:
    assert _wire_size(data) == len(normalize_message_line_endings(data))


def test_a_claimed_copy_is_not_claimed_again_until_its_lease_ends(
    db: Database, alice: Persona
) -> None:
    queue_id, _ = queue(db, alice)
    now, lease = now_us(), int(LEASE * SECOND)
    claim = {"until": now + lease, "limit": 10}
    [claimed] = db.write(queries.claim_outbound, now=now, **claim)
    assert (claimed.id, claimed.rcpt_to, claimed.data) == (queue_id, READER, DATA)
    assert db.write(queries.claim_outbound, now=now, **claim) == []
    assert db.write(queries.claim_outbound, now=now + lease - 1, **claim) == []
    [again] = db.write(queries.claim_outbound, now=now + lease, **claim)
    assert again.id == queue_id


def test_a_copy_whose_sender_died_is_sent_after_its_lease(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    queue(db, alice)
    now, lease = now_us(), int(LEASE * SECOND)
    db.write(queries.claim_outbound, now=now, until=now + lease, limit=10)  # then kill -9
    assert deliver(db, server.url, clock=lambda: now + SECOND) == 0
    assert deliver(db, server.url, clock=lambda: now + lease) == 1
    assert server.messages() == [DATA]


def test_concurrent_claimers_pass_over_each_others_copies(db: Database, alice: Persona) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: claims cannot overlap")
    ids = {queue(db, alice, f"r{n}@example.test")[0] for n in range(6)}
    now = now_us()
    with db.transaction() as first:
        mine = queries.claim_outbound(first, now=now, until=now + SECOND, limit=3)
        # The first claim is not committed yet: a second node skips its rows, without waiting.
        theirs = db.write(queries.claim_outbound, now=now, until=now + SECOND, limit=10)
    assert len(mine) == 3
    assert {c.id for c in mine} | {c.id for c in theirs} == ids
    assert not {c.id for c in mine} & {c.id for c in theirs}


def test_two_nodes_send_each_copy_once(
    db: Database, alice: Persona, server: UpstreamServer
) -> None:
    recipients = [f"r{n}@example.test" for n in range(12)]
    for rcpt in recipients:
        queue(db, alice, rcpt)

    async def node() -> int:
        writer = Writer(db)
        writer.start()
        try:
            deliverer = Deliverer(db, writer, Upstream.parse(server.url), concurrency=3)
            return await deliverer.deliver_due()
        finally:
            await writer.stop()

    async def both() -> list[int]:
        return list(await asyncio.gather(node(), node()))

    assert sum(asyncio.run(both())) == 12
    assert sorted(r for d in server.deliveries() for r in d.rcpt_tos) == sorted(recipients)


def test_a_dkim_signature_verifies_after_delivery(
    db: Database, alice: Persona, server: UpstreamServer, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"mb2026._domainkey.example.test." else b""

    queue(db, alice)
    deliver(db, server.url, dkim=Dkim.load(path, "mb2026", "example.test"))
    [received] = server.messages()
    signature = received.removesuffix(DATA)  # the copy itself arrives unchanged, after it
    assert signature.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert (
        b" h=from : to : subject : date : message-id : mime-version : content-type : "
        b"content-transfer-encoding : from;" in signature.replace(b"\r\n", b"")
    )
    assert dkim.verify(received, dnsfunc=dns)
    assert not dkim.verify(received.replace(b"Subject: Hello", b"Subject: Hullo"), dnsfunc=dns)


def test_without_an_upstream_mail_stays_queued_and_it_says_so_once(
    db: Database, alice: Persona, caplog: pytest.LogCaptureFixture
) -> None:
    queue_id, _ = queue(db, alice)
    assert deliver(db, None) == 0

    async def serve_a_while() -> None:
        writer = Writer(db)
        writer.start()
        deliverer = Deliverer(db, writer, None, poll=0.02)
        deliverer.start()
        for _ in range(5):
            deliverer.poke()
            await asyncio.sleep(0.05)
        await deliverer.stop()
        await writer.stop()

    with caplog.at_level(logging.WARNING, logger="mailbeacon.relay.deliverer"):
        asyncio.run(serve_a_while())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1 copies are queued but not sent" in warnings[0]
    assert "--upstream" in warnings[0]
    assert copy_of(db, queue_id)["state"] == "queued"


def test_serve_delivers_in_the_background_as_soon_as_it_is_poked(
    settings: Settings, db: Database, alice: Persona, server: UpstreamServer
) -> None:
    services = Services.open(dataclasses.replace(settings, upstream=Upstream.parse(server.url)))
    services.deliverer.poll = 3600  # only a poke can wake it in time
    with TestClient(App(services), client=PEER):
        time.sleep(0.2)  # the deliverer looked at the queue on starting, found nothing, waits
        queue_id, _ = queue(db, alice)
        services.deliverer.poke()  # from another thread than the server's, as the relay's
        assert server.wait_for(1, timeout=10) == [DATA]
        deadline = time.monotonic() + 10
        while copy_of(db, queue_id)["state"] != "sent" and time.monotonic() < deadline:
            time.sleep(0.02)
    assert copy_of(db, queue_id)["state"] == "sent"
