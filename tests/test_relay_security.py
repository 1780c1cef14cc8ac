"""What the SMTP relay refuses: no AUTH (never an open relay), AUTH in clear text or with a wrong
key, too much mail, SMTP smuggling, and CR/LF or NUL where they would inject a command or header.

Attacks are written with smtplib sending raw bytes; one server per store for the module.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from mailbeacon.relay import tls
from mailbeacon.settings import Settings, SettingsError
from tests.conftest import SECRET
from tests.support.postgres import TemporaryPostgres
from tests.support.relay import Relay, User, crlf, raw_data

MAX_SIZE = 64 * 1024
VICTIM = "victim@example.test"
_databases = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    directory = tmp_path_factory.mktemp(f"relay-security-{request.param}")
    if request.param == "sqlite":
        url = str(directory / "mailbeacon.db")
    else:
        postgres: TemporaryPostgres = request.getfixturevalue("postgres")
        url = postgres.create_database(
            f"relay_security_{next(_databases)}", template="mailbeacon_template"
        )
    server = Relay(directory / "data", url, SECRET, env={"MAILBEACON_SMTP_MAX_SIZE": "64K"})
    yield server
    server.stop()


def message(subject: str = "Hello", extra: str = "") -> bytes:
    return crlf(
        f"From: alice@example.test\nTo: {VICTIM}\nSubject: {subject}\n{extra}"
        "Content-Type: text/html\n\n<p>Hi</p>\n"
    )


def test_without_auth_mail_rcpt_and_data_are_refused_so_it_is_never_an_open_relay(
    relay: Relay, tmp_path: Path
) -> None:
    with relay.session(None) as client:
        assert client.mail("alice@example.test")[0] == 530
        assert client.rcpt(VICTIM)[0] == 530
        assert client.docmd("DATA")[0] == 530
    sent = relay.swaks(None, [VICTIM], message(), tmp_path)
    assert sent.returncode != 0
    assert "530 5.7.0 Authentication required" in sent.stdout
    assert relay.queued_to(VICTIM) == 0


def test_auth_is_not_offered_nor_taken_before_starttls_even_on_loopback(relay: Relay) -> None:
    alice = relay.user()
    with relay.session(None, tls=False) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        plain = base64.b64encode(f"\0{alice.email}\0{alice.api_key}".encode()).decode()
        code, reply = client.docmd("AUTH", f"PLAIN {plain}")
        assert (code, reply) == (530, b"Must issue a STARTTLS command first")
        assert client.mail(alice.email)[0] == 530


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_the_users_email_and_api_key_log_in_and_nothing_else_does(
    relay: Relay, tmp_path: Path, mechanism: str
) -> None:
    alice, bob = relay.user("alice"), relay.user("bob")
    to = [f"friend.{alice.id}@example.test"]

    def login(user: User, key: str) -> str:
        swaks = relay.swaks(user, to, message(), tmp_path, "--auth", mechanism, key=key)
        return swaks.stdout

    assert "235 2.7.0 Authentication successful" in login(alice, alice.api_key)
    assert "535 5.7.8 Authentication credentials invalid" in login(alice, "mb_" + "x" * 43)
    assert "535 5.7.8" in login(alice, bob.api_key)  # bob's key is not alice's password
    assert "535 5.7.8" in login(alice, "")
    assert len(relay.queued(alice)) == 1
    assert relay.queued(bob) == []
    log = relay.log()
    assert f"AUTH refused for '{alice.email}' from 127.0.0.1" in log
    assert bob.api_key not in log


def test_plain_and_login_also_work_in_answer_to_a_challenge(relay: Relay) -> None:
    alice = relay.user()

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    with relay.session(None) as client:
        assert client.docmd("AUTH", "PLAIN") == (334, b"")
        assert client.docmd("*")[0] == 501  # the client gave up
        assert client.docmd("AUTH", "LOGIN") == (334, b64("Username:").encode())
        assert client.docmd(b64(alice.email)) == (334, b64("Password:").encode())
        assert client.docmd(b64("not the key"))[0] == 535
        assert client.docmd("AUTH", "PLAIN")[0] == 334
        assert client.docmd(b64(f"\0{alice.email}\0{alice.api_key}"))[0] == 235
        assert client.mail(alice.email)[0] == 250


def test_it_advertises_its_size_limit_and_refuses_bigger_messages_with_552(
    relay: Relay, tmp_path: Path
) -> None:
    alice = relay.user()
    with relay.session(alice) as client:
        assert client.esmtp_features["size"] == str(MAX_SIZE)
        code, reply = client.mail(alice.email, [f"SIZE={MAX_SIZE + 1}"])
        assert code == 552, reply
    big = message(extra=f"X-Padding: {'x' * 900}\n" * 80)
    assert len(big) > MAX_SIZE
    sent = relay.swaks(alice, [VICTIM], big, tmp_path)
    assert "552 Error: Too much mail data" in sent.stdout
    assert relay.queued(alice) == []


def test_a_login_name_with_line_breaks_cannot_write_lines_of_its_own_in_the_log(
    relay: Relay,
) -> None:
    forged = "x@example.test\nWARNING mailbeacon: queued 1 copy for ceo@example.test"
    with relay.session(None) as client:
        plain = base64.b64encode(f"\0{forged}\0wrong".encode()).decode()
        assert client.docmd("AUTH", f"PLAIN {plain}")[0] == 535
    lines = relay.log().splitlines()
    assert not [line for line in lines if line.startswith("WARNING mailbeacon: queued 1 copy")]
    assert any(repr(forged) in line for line in lines)


SMUGGLED = (
    b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<smuggled@example.test>\r\nDATA\r\n"
    b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nPay this invoice.\r\n"
)


@pytest.mark.parametrize(
    "end",
    [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n", b"\r.\n", b"\r"],
    ids=[
        "lf-dot-lf",
        "cr-dot-cr",
        "crlf-dot-lf",
        "lf-dot-crlf",
        "cr-dot-crlf",
        "crlf-dot-cr",
        "lf",
        "cr-dot-lf",
        "cr",
    ],
)
def test_a_bare_lf_or_cr_is_refused_so_nothing_can_be_smuggled(relay: Relay, end: bytes) -> None:
    alice = relay.user()
    with relay.session(alice) as client:
        client.mail(alice.email)
        client.rcpt(VICTIM)
        data = message().removesuffix(b"\r\n") + end + SMUGGLED + b"\r\n.\r\n"
        code, reply = raw_data(client, data)
        assert code == 554, reply
        assert b"bare CR or LF" in reply
        # The smuggled commands were data, never commands: the session is where it was.
        assert client.noop()[0] == 250
        assert client.mail(alice.email)[0] == 250
    assert relay.queued(alice) == []
    assert relay.queued_to("smuggled@example.test") == 0


@pytest.mark.parametrize(
    "header",
    [b"Subject: Hi\rBcc: spy@example.test\r\n", b"Subject: Hi\nBcc: spy@example.test\r\n",
     b"Subject: Hi\x00there\r\n"],
    ids=["bare-cr", "bare-lf", "nul"],
)  # fmt: skip
def test_a_header_line_with_a_bare_cr_lf_or_nul_is_refused(relay: Relay, header: bytes) -> None:
    alice = relay.user()
    with relay.session(alice) as client:
        client.mail(alice.email)
        client.rcpt(VICTIM)
        code, reply = raw_data(
            client, b"From: alice@example.test\r\n" + header + b"\r\nHi\r\n.\r\n"
        )
        assert code == 554, reply
    assert relay.queued(alice) == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (b"MAIL FROM:<alice\r@example.test>", 553),
        (b"MAIL FROM:<alice\x00@example.test>", 553),
        (b"MAIL FROM:<alice@example.test\x0bRCPT TO:x@y.test>", 501),
        (b"RCPT TO:<victim\r@example.test>", 553),
        (b"RCPT TO:<victim@example.test\x00>", 553),
        (b"RCPT TO:<postmaster>", 553),
    ],
)
def test_control_characters_in_an_envelope_address_are_refused(
    relay: Relay, command: bytes, code: int
) -> None:
    alice = relay.user()
    with relay.session(alice) as client:
        if command.startswith(b"RCPT"):
            client.mail(alice.email)
        client.send(command + b"\r\n")  # smtplib itself refuses CR or LF in a command
        assert client.getreply()[0] == code
        if command.startswith(b"RCPT"):
            assert client.docmd("DATA")[0] == 503  # no recipient was taken
    assert relay.queued(alice) == []


def test_a_line_break_hidden_in_an_encoded_subject_or_campaign_is_not_stored(
    relay: Relay, tmp_path: Path
) -> None:
    alice = relay.user()
    data = message(
        subject="=?utf-8?q?Hi=0D=0ABcc:_spy@example.test?=",
        extra="X-Mailbeacon-Track: yes\nX-Mailbeacon-Campaign: =?utf-8?q?spring=0A=00x?=\n",
    )
    assert relay.swaks(alice, [VICTIM], data, tmp_path).returncode == 0
    [copy] = relay.queued(alice)
    assert copy.message_id is not None
    request = urllib.request.Request(
        f"{relay.url}/api/v1/messages/{copy.message_id}",
        headers={"Authorization": f"Bearer {alice.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        found = json.loads(response.read())
    assert (found["subject"], found["campaign"]) == ("Hi Bcc: spy@example.test", "spring x")


def test_one_copy_per_recipient_and_at_most_100_recipients_a_message(relay: Relay) -> None:
    alice = relay.user()
    with relay.session(alice) as client:
        client.mail(alice.email)
        assert client.rcpt(VICTIM)[0] == 250
        assert client.rcpt(VICTIM.upper())[0] == 250  # the same mailbox: no second copy
        for n in range(99):
            assert client.rcpt(f"r{n}@example.test")[0] == 250
        code, reply = client.rcpt("one-too-many@example.test")
        assert code == 452, reply
        code, reply = raw_data(client, message() + b".\r\n")
        assert (code, reply) == (250, b"2.0.0 Queued: 100 untracked copies")
    assert len(relay.queued(alice)) == 100


def test_the_self_signed_certificate_is_made_once_with_a_private_key(relay: Relay) -> None:
    cert, key = relay.data / "smtp-cert.pem", relay.data / "smtp-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert tls.fingerprint(cert) in relay.log()  # serve shows it, to compare with the client's

    # Started again, the relay keeps the certificate its users have accepted.
    settings = Settings.load({"data": str(relay.data), "secret": SECRET}, environ={})
    assert tls.certificate_files(settings) == (cert, key)
    assert x509.load_pem_x509_certificate(cert.read_bytes()) == loaded


def test_a_certificate_that_does_not_load_refuses_to_start(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    settings = Settings.load(
        {"data": str(tmp_path), "secret": SECRET, "smtp_cert": str(cert), "smtp_key": str(key)},
        environ={},
    )
    with pytest.raises(SettingsError, match=re.escape(str(cert))):
        tls.server_context(settings)
