"""The SMTP relay of ``mailbeacon serve``, driven by swaks: what gets queued, tracked or not.

One server per store for the module (users of their own per test), delivering to a real
upstream server; what was queued is read from the ``outbound`` table.
"""

from __future__ import annotations

import binascii
import itertools
import json
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailbeacon.cli import app
from mailbeacon.instrument.mime import html_parts
from tests.conftest import SECRET
from tests.support.postgres import TemporaryPostgres
from tests.support.relay import Relay, User, crlf, raw_data
from tests.support.upstream import Delivery, Upstream

CORPUS = Path(__file__).parent / "corpus" / "mime"
PIXEL = re.compile(rb"/o/([A-Za-z0-9_-]+)\.gif")
_databases = itertools.count()


def _db_url(request: pytest.FixtureRequest, store: str, directory: Path) -> str:
    if store == "sqlite":
        return str(directory / "mailbeacon.db")
    server: TemporaryPostgres = request.getfixturevalue("postgres")
    return server.create_database(f"relay_{next(_databases)}", template="mailbeacon_template")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    directory = tmp_path_factory.mktemp(f"relay-{request.param}")
    upstream = Upstream(directory).start()
    server = Relay(
        directory / "data", _db_url(request, request.param, directory), SECRET, upstream=upstream
    )
    yield server
    server.stop()
    upstream.stop()


def call(url: str, user: User | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {user.api_key}"} if user else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        data: bytes = r.read()
        return data


def with_header(name_value: str, message: bytes) -> bytes:
    return f"{name_value}\r\n".encode() + message


def delivered(upstream: Upstream, recipients: set[str], timeout: float = 20.0) -> list[Delivery]:
    """What the upstream server accepted for these recipients, once all of them have a copy."""
    deadline = time.monotonic() + timeout
    while True:
        found = [d for d in upstream.deliveries() if set(d.rcpt_tos) & recipients]
        if {r for d in found for r in d.rcpt_tos} >= recipients:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"upstream has {found}")
        time.sleep(0.05)


def dinner(user: User, track: str | None = "yes") -> bytes:
    lines = [
        f"From: Niaj <{user.email}>",
        "To: Olivia <olivia@example.test>, peggy@example.test",
        "Cc: Rupert <rupert@example.test>",
        "Bcc: sybil@example.test",
        "Subject: Team dinner",
        f"Message-ID: <dinner-{user.id}@example.test>",
        *([f"X-Mailbeacon-Track: {track}"] if track else []),
        "X-Mailbeacon-Campaign: dinner",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=utf-8",
        "",
        '<html><body><p>Booked: <a href="https://dine.example.test/r/8812">table</a>.</p>'
        "</body></html>",
    ]
    return crlf("\n".join(lines) + "\n")


DINNER_TO = [
    "olivia@example.test",
    "peggy@example.test",
    "rupert@example.test",
    "sybil@example.test",
]


def test_a_tracked_message_gets_a_copy_per_recipient_each_with_its_own_pixel_and_no_bcc(
    relay: Relay, tmp_path: Path
) -> None:
    niaj = relay.user("niaj")
    sent = relay.swaks(niaj, DINNER_TO, dinner(niaj), tmp_path)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "250 2.0.0 Queued: 4 tracked copies" in sent.stdout

    queued = relay.queued(niaj)
    assert [q.rcpt_to for q in queued] == DINNER_TO
    assert all(q.mail_from == niaj.email for q in queued)
    pixels = set()
    for copy in queued:
        assert copy.message_id is not None
        headers = copy.data.split(b"\r\n\r\n", 1)[0].lower()
        assert b"bcc" not in headers
        assert b"sybil" not in headers  # not even in her own copy
        assert b"x-mailbeacon" not in copy.data.lower()
        assert b"https://dine.example.test" not in copy.data
        [token] = PIXEL.findall(copy.data)
        pixels.add(token)
        found = json.loads(call(f"{relay.url}/api/v1/messages/{copy.message_id}", niaj))
        assert (found["recipient"], found["campaign"]) == (copy.rcpt_to, "dinner")
        assert (found["from"], found["subject"]) == (niaj.email, "Team dinner")
        assert found["links"] == ["https://dine.example.test/r/8812"]
    assert len(pixels) == 4
    assert len({q.message_id for q in queued}) == 4

    # The sender opening the copy from where they sent it: their own view, not an open.
    olivia = queued[0]
    pixel = PIXEL.search(olivia.data)
    assert pixel is not None
    call(relay.url + pixel.group().decode())
    found = json.loads(call(f"{relay.url}/api/v1/messages/{olivia.message_id}", niaj))
    assert [h["verdict"] for h in found["hits"]] == ["self"]


def test_the_copies_reach_the_upstream_server_each_with_its_own_pixel(
    relay: Relay, tmp_path: Path
) -> None:
    assert relay.upstream is not None
    niaj = relay.user("niaj")
    to = [f"olivia.{niaj.id}@example.test", f"sybil.{niaj.id}@example.test"]
    message = dinner(niaj).replace(b"sybil@example.test", to[1].encode())
    message = message.replace(b"olivia@example.test", to[0].encode())
    assert relay.swaks(niaj, to, message, tmp_path).returncode == 0

    arrived = delivered(relay.upstream, set(to))
    assert sorted(d.rcpt_tos[0] for d in arrived) == sorted(to)
    assert all(len(d.rcpt_tos) == 1 and d.mail_from == niaj.email for d in arrived)
    queued = {q.rcpt_to: q for q in relay.queued(niaj)}
    for copy in arrived:
        assert PIXEL.search(copy.data) is not None
        assert b"bcc:" not in copy.data.lower()
        assert b"x-mailbeacon" not in copy.data.lower()
        assert copy.data.endswith(queued[copy.rcpt_tos[0]].data)  # a DKIM header at most added
    assert len({PIXEL.findall(d.data)[0] for d in arrived}) == 2


@pytest.mark.parametrize("name", ["latin1-qp.eml", "mixed-with-attachments.eml"])
def test_it_keeps_every_byte_outside_the_html_part(relay: Relay, tmp_path: Path, name: str) -> None:
    alice = relay.user()
    original = crlf((CORPUS / name).read_bytes())
    assert (
        relay.swaks(
            alice, ["carol@example.org"], with_header("X-Mailbeacon-Track: yes", original), tmp_path
        ).returncode
        == 0
    )

    [copy] = relay.queued(alice)
    assert copy.message_id is not None
    [part] = html_parts(original)
    after = len(original) - part.end
    assert copy.data[: part.start] == original[: part.start]  # headers, text part, boundaries
    assert copy.data[len(copy.data) - after :] == original[part.end :]  # attachments
    html = copy.data[part.start : len(copy.data) - after]
    if name == "latin1-qp.eml":
        text = binascii.a2b_qp(html).decode("iso-8859-1")
        assert "Chère cliente" in text
        assert "© Boutique Müller" in text
        assert all(len(line) <= 76 for line in html.split(b"\r\n"))
    else:
        text = binascii.a2b_qp(html).decode("utf-8")
    assert PIXEL.search(text.encode()) is not None
    assert "/c/" in text


def test_a_message_that_says_track_no_goes_out_untouched_but_for_our_headers_and_bcc(
    relay: Relay, tmp_path: Path
) -> None:
    niaj = relay.user("niaj")
    sent = relay.swaks(niaj, DINNER_TO, dinner(niaj, track="no"), tmp_path)
    assert "250 2.0.0 Queued: 4 untracked copies" in sent.stdout, sent.stdout

    expected = re.sub(rb"(?im)^(bcc|x-mailbeacon-[a-z]+):[^\n]*\n", b"", dinner(niaj, "no"))
    queued = relay.queued(niaj)
    assert [q.rcpt_to for q in queued] == DINNER_TO
    assert all(q.data == expected and q.message_id is None for q in queued)
    assert b"https://dine.example.test/r/8812" in expected


def test_a_user_who_tracks_by_default_gets_tracked_mail_unless_it_says_no(
    relay: Relay, tmp_path: Path
) -> None:
    niaj = relay.user("niaj")
    runner = CliRunner()

    def sends(track: str | None) -> bool:
        before = len(relay.queued(niaj))
        assert (
            relay.swaks(niaj, ["olivia@example.test"], dinner(niaj, track), tmp_path).returncode
            == 0
        )
        [copy] = relay.queued(niaj)[before:]
        return copy.message_id is not None

    assert not sends(None)  # off by default: only mail that asks is tracked
    shown = runner.invoke(app, ["users", "track", niaj.email, "--json"], env=relay.env)
    assert json.loads(shown.stdout) == {"email": niaj.email, "track_default": False}

    turned = runner.invoke(app, ["users", "track", niaj.email, "--default", "on"], env=relay.env)
    assert turned.exit_code == 0, turned.output
    assert "tracked unless it says X-Mailbeacon-Track: no" in turned.stdout
    assert sends(None)
    assert not sends("no")
    assert sends("yes")

    runner.invoke(app, ["users", "track", niaj.email, "--default", "off"], env=relay.env)
    assert not sends(None)
    refused = runner.invoke(
        app, ["users", "track", niaj.email, "--default", "maybe"], env=relay.env
    )
    assert refused.exit_code == 1
    unknown = runner.invoke(
        app, ["users", "track", "who@example.test", "--default", "on"], env=relay.env
    )
    assert unknown.exit_code == 1


BROKEN = """From: alice@example.test
To: olivia@example.test
Subject: Broken
Message-ID: <broken-{id}@example.test>
X-Mailbeacon-Track: yes
MIME-Version: 1.0
Content-Type: multipart/alternative

no boundary here
"""


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (BROKEN, "has no boundary parameter"),
        (BROKEN.replace("multipart/alternative", "text/plain"), "no HTML part"),
    ],
    ids=["no-boundary", "no-html"],
)
def test_a_message_that_cannot_be_instrumented_is_relayed_untracked_with_the_reason_logged(
    relay: Relay, tmp_path: Path, message: str, reason: str
) -> None:
    alice = relay.user()
    data = crlf(message.format(id=alice.id))
    sent = relay.swaks(alice, ["olivia@example.test"], data, tmp_path)
    assert "250 2.0.0 Queued: 1 untracked copy" in sent.stdout, sent.stdout

    [copy] = relay.queued(alice)
    assert copy.message_id is None
    assert copy.data == data.replace(b"X-Mailbeacon-Track: yes\r\n", b"")
    logged = [line for line in relay.log().splitlines() if f"<broken-{alice.id}@" in line]
    assert any("untracked" in line and reason in line for line in logged), logged


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_message_is_committed_before_its_250_and_survives_kill_9(
    request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    server = Relay(tmp_path / "data", _db_url(request, store, tmp_path), SECRET)
    alice = server.user()
    try:
        sent = server.swaks(alice, ["olivia@example.test"], dinner(alice), tmp_path)
        assert "250 2.0.0 Queued: 1 tracked copy" in sent.stdout, sent.stdout
    finally:
        server.stop(signal.SIGKILL)
    [copy] = server.queued(alice)
    server.db.close()
    assert copy.rcpt_to == "olivia@example.test"
    assert copy.message_id is not None


def test_a_submission_asks_for_a_mode_and_each_recipient_gets_the_strictest(
    relay: Relay, tmp_path: Path
) -> None:
    pat = relay.user("pat")
    request = urllib.request.Request(
        f"{relay.url}/api/v1/recipients/peggy@example.test/consent", method="PUT",
        data=b'{"state": "denied"}',
        headers={"Authorization": f"Bearer {pat.api_key}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    sent = relay.swaks(pat, DINNER_TO, dinner(pat, track="pseudonymous"), tmp_path)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    by_rcpt = {q.rcpt_to: q for q in relay.queued(pat)}
    peggy = by_rcpt.pop("peggy@example.test")
    assert peggy.message_id is None  # she refused: her copy carries no tracking
    assert not PIXEL.findall(peggy.data)
    assert b"https://dine.example.test/r/8812" in peggy.data
    for copy in by_rcpt.values():
        found = json.loads(call(f"{relay.url}/api/v1/messages/{copy.message_id}", pat))
        assert found["tracking"] == "pseudonymous"


SMUGGLED = (
    b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<smuggled@example.test>\r\nDATA\r\n"
    b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nPay this invoice.\r\n"
)


def test_a_dot_stuffed_end_of_data_leaves_the_relay_as_data_not_as_commands(relay: Relay) -> None:
    """A line that is one dot ends the data unless it is stuffed ("..") on the wire: the relay
    unstuffs it, and must stuff it again when it sends the copy on, or the upstream server
    would end the message there and run what follows as commands of the relay's own."""
    assert relay.upstream is not None
    alice = relay.user()
    to = f"reader.{alice.id}@example.test"
    body = b"From: a@example.test\r\nSubject: dots\r\n\r\nHi\r\n..\r\n" + SMUGGLED
    with relay.session(alice) as client:
        client.mail(alice.email)
        client.rcpt(to)
        code, reply = raw_data(client, body + b".\r\n")
        assert code == 250, reply
    [copy] = relay.queued(alice)
    assert b"\r\n.\r\nMAIL FROM:<ceo@example.test>" in copy.data  # unstuffed, as it is meant
    deadline = time.monotonic() + 20
    while not [d for d in relay.upstream.deliveries() if to in d.rcpt_tos]:
        assert time.monotonic() < deadline, "the copy never reached the upstream server"
        time.sleep(0.05)
    [delivered] = [d for d in relay.upstream.deliveries() if to in d.rcpt_tos]
    assert b"MAIL FROM:<ceo@example.test>" in delivered.data
    assert not [d for d in relay.upstream.deliveries() if "smuggled@example.test" in d.rcpt_tos]
