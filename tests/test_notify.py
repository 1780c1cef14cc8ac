"""Notifications: a person's opens and clicks become events once their verdict has settled;
machines, the sender and muted messages tell nobody; alerts go to the sender by email."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from typing import Any

import pytest
from starlette.testclient import TestClient

from mailbeacon.accounts import now_us
from mailbeacon.classify.settle import settle_all
from mailbeacon.notify.alerts import DIGEST_EVERY
from mailbeacon.notify.notifier import notify_round
from mailbeacon.relay.deliverer import bounce
from mailbeacon.relay.queue import Outgoing, enqueue
from mailbeacon.store.db import Database
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send

SECOND = 1_000_000
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
APPLE_RELAY = "104.28.28.1"  # inside the first range of ../shared/data's IPv4 list
GATEWAY = "203.0.113.200"
LINKS = "".join(f'<a href="https://shop.example.test/{n}">{n}</a> ' for n in range(3))
LONG_AGO = "2026-11-30T09:00:00Z"  # a day before: hits notify at once


def run(services: Services, *, later: float = 0) -> None:
    """A notification round as the background notifier does it, ``later`` seconds from now."""
    at = now_us() + int(later * SECOND)
    services.db.write(notify_round, now=at, mailer=services.notifier.mailer)


def events(db: Database, *types: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db.read(lambda c: c.execute("SELECT type, data FROM events ORDER BY id"))
    return [(t, json.loads(d)) for t, d in rows if not types or t in types]


def alerts(db: Database) -> list[EmailMessage]:
    """Alert emails queued for the sender (untracked copies)."""
    rows = db.read(
        lambda c: c.execute("SELECT data FROM outbound WHERE message_id IS NULL ORDER BY id")
    )
    return [
        email.message_from_bytes(bytes(r[0]), policy=email.policy.default)  # type: ignore[misc]
        for r in rows
    ]


def open_(client: TestClient, message: dict[str, Any], agent: str, peer: str | None = None) -> None:
    headers = {"User-Agent": agent} | ({"X-Test-Peer": peer} if peer else {})
    client.get(path_of(message["pixel_url"]), headers=headers)


def test_a_persons_open_long_after_sending_is_published_at_once(
    client: TestClient, alice: Persona, services: Services
) -> None:
    message = send(client, alice, subject="Quarterly figures", sent_at=LONG_AGO)
    open_(client, message, THUNDERBIRD)
    run(services)
    [(kind, data)] = events(services.db)
    assert kind == "email.opened"
    assert data["message_id"] == message["id"]
    assert data["recipient"] == "reader@example.test"
    assert data["subject"] == "Quarterly figures"
    assert (data["kind"], data["verdict"], data["first"]) == ("open", "human", True)
    assert data["client"] == {"name": "Thunderbird", "type": "desktop", "os": "Windows 10"}
    assert data["seconds_after_sending"] > 3600
    open_(client, message, THUNDERBIRD)
    run(services)
    assert [d["first"] for _, d in events(services.db)] == [True, False]


def test_a_hit_close_to_sending_waits_for_its_verdict_to_settle(
    client: TestClient, alice: Persona, services: Services
) -> None:
    message = send(client, alice)  # sent now
    open_(client, message, THUNDERBIRD)
    run(services, later=30)
    assert events(services.db) == []  # held: a gateway's sweep may still unmask it
    run(services, later=61)
    assert [t for t, _ in events(services.db)] == ["email.opened"]


def test_a_gateway_sweep_and_apple_prefetch_notify_nobody(
    client: TestClient, alice: Persona, services: Services
) -> None:
    scanned = send(client, alice, html=LINKS)
    open_(client, scanned, CHROME, GATEWAY)  # looks like a person, for now
    for link in scanned["links"]:
        client.get(
            path_of(link["tracked_url"]),
            headers={"User-Agent": CHROME, "X-Test-Peer": GATEWAY},
            follow_redirects=False,
        )
    prefetched = send(client, alice, sent_at=LONG_AGO)
    open_(client, prefetched, "Mozilla/5.0", APPLE_RELAY)
    settle_all(services.db, now_us())
    run(services, later=120)
    assert events(services.db) == []
    assert alerts(services.db) == []


def test_the_senders_own_open_notifies_nobody(
    client: TestClient, alice: Persona, services: Services
) -> None:
    message = send(client, alice, sent_at=LONG_AGO)
    open_(client, message, THUNDERBIRD, "192.0.2.25")  # where alice called the API from
    run(services)
    assert events(services.db) == []


def test_a_click_notifies_once_settling_has_seen_it(
    client: TestClient, alice: Persona, services: Services
) -> None:
    message = send(client, alice, html=LINKS, sent_at=LONG_AGO)
    services.settler.delay = 3600  # settling is this test's to run
    client.get(
        path_of(message["links"][1]["tracked_url"]),
        headers={"User-Agent": CHROME},
        follow_redirects=False,
    )
    run(services)
    assert events(services.db) == []  # it may be the first of a sweep
    settle_all(services.db, now_us())
    run(services)
    [(kind, data)] = events(services.db)
    assert (kind, data["kind"], data["url"]) == (
        "email.clicked",
        "click",
        "https://shop.example.test/1",
    )


def test_every_hit_is_published_raw_for_a_user_who_subscribes_to_them(
    client: TestClient, alice: Persona, services: Services
) -> None:
    services.db.write(
        lambda c: c.execute(
            "INSERT INTO webhooks (id, user_id, url, events, raw_hits, secrets, created_at) "
            "VALUES ('wh_test', ?, 'https://hooks.example.test/', '[\"email.hit\"]', TRUE, "
            "'[]', 0)",
            (alice.id,),
        )
    )
    message = send(client, alice, sent_at=LONG_AGO)
    open_(client, message, "Mozilla/5.0", APPLE_RELAY)
    open_(client, message, THUNDERBIRD)
    run(services)
    found = events(services.db)
    assert [(t, d["verdict"]) for t, d in found] == [
        ("email.hit", "machine"),
        ("email.hit", "human"),
        ("email.opened", "human"),
    ]
    assert found[0][1]["agent"] == "apple_mpp"


def test_bounces_and_unsubscribes_are_published_once(
    client: TestClient, alice: Persona, services: Services
) -> None:
    message = send(client, alice)
    [queued] = services.db.write(
        enqueue,
        [Outgoing(alice.id, message["id"], alice.email, "reader@example.test", b"x\r\n")],
        now=now_us(),
    )
    services.db.write(bounce, queued, error="550 no such user", at=now_us(), suppress=True)
    [(kind, data)] = events(services.db)
    assert kind == "email.bounced"
    assert data == {
        "message_id": message["id"],
        "recipient": "reader@example.test",
        "subject": "Hello",
        "campaign": None,
        "error": "550 no such user",
    }
    other = send(client, alice, to=["fan@example.test"], campaign="news")
    token = services.signer.sign("u", other["id"])
    for _ in range(2):
        assert client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click").is_success
    assert events(services.db, "email.unsubscribed") == [
        (
            "email.unsubscribed",
            {
                "message_id": other["id"],
                "recipient": "fan@example.test",
                "subject": "Hello",
                "campaign": "news",
            },
        )
    ]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("first", 1), ("every", 2), ("off", 0)],
)
def test_alerts_follow_the_users_choice(
    client: TestClient, alice: Persona, services: Services, mode: str, expected: int
) -> None:
    assert client.put("/api/v1/settings", json={"alerts": mode}, headers=alice.auth).is_success
    message = send(client, alice, subject="Proposal", sent_at=LONG_AGO)
    open_(client, message, THUNDERBIRD)
    open_(client, message, THUNDERBIRD)
    run(services)
    sent = alerts(services.db)
    assert len(sent) == expected
    if sent:
        alert = sent[0]
        assert alert["To"] == alice.email
        assert alert["Subject"] == "Opened: “Proposal” by reader@example.test"
        assert alert["Auto-Submitted"] == "auto-generated"
        body = alert.get_content()
        assert "reader@example.test opened “Proposal”." in body
        assert "Thunderbird (desktop, Windows 10)" in body
        assert f"mailbeacon explain {message['id']}" in body


def test_a_muted_message_alerts_nobody_but_still_publishes(
    client: TestClient, alice: Persona, bob: Persona, services: Services
) -> None:
    message = send(client, alice, sent_at=LONG_AGO)
    path = f"/api/v1/messages/{message['id']}/mute"
    assert client.post(path, headers=bob.auth).status_code == 404  # not bob's to mute
    assert client.post(path, headers=alice.auth).json() == {
        "id": message["id"],
        "alerts_muted": True,
    }
    shown = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert shown["alerts_muted"] is True
    open_(client, message, THUNDERBIRD)
    run(services)
    assert [t for t, _ in events(services.db)] == ["email.opened"]
    assert alerts(services.db) == []
    assert client.delete(path, headers=alice.auth).json()["alerts_muted"] is False


def test_the_digest_gathers_an_hours_opens_into_one_email(
    client: TestClient, alice: Persona, services: Services
) -> None:
    client.put("/api/v1/settings", json={"alerts": "digest"}, headers=alice.auth)
    for subject in ("One", "Two"):
        open_(client, send(client, alice, subject=subject, sent_at=LONG_AGO), THUNDERBIRD)
    run(services)
    assert alerts(services.db) == []
    run(services, later=DIGEST_EVERY / SECOND + 1)
    [digest] = alerts(services.db)
    assert digest["Subject"] == "2 opens in the last hour"
    body = digest.get_content()
    assert "opened “One”" in body
    assert "opened “Two”" in body
    run(services, later=2 * DIGEST_EVERY / SECOND + 2)
    assert len(alerts(services.db)) == 1


def test_the_mute_link_in_an_alert_mutes_that_message_on_a_post_only(
    client: TestClient, alice: Persona, services: Services
) -> None:
    client.put("/api/v1/settings", json={"alerts": "every"}, headers=alice.auth)
    message = send(client, alice, subject="<b>Offer</b>", sent_at=LONG_AGO)
    open_(client, message, THUNDERBIRD)
    run(services)
    [alert] = alerts(services.db)
    link = alert.get_content().rsplit("No more alerts for this message: ", 1)[1].split()[0]
    path = path_of(link)
    assert path.startswith("/m/")
    shown = client.get(path)  # what a scanner in the sender's mailbox does
    assert shown.status_code == 200
    assert "&lt;b&gt;Offer&lt;/b&gt;" in shown.text
    assert "default-src 'none'" in shown.headers["content-security-policy"]
    open_(client, message, THUNDERBIRD)
    run(services)
    assert len(alerts(services.db)) == 2  # a GET mutes nothing
    assert "Alerts muted" in client.post(path).text
    open_(client, message, THUNDERBIRD)
    run(services)
    assert len(alerts(services.db)) == 2
    assert client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()[
        "alerts_muted"
    ]
    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BA")
    assert client.post(forged).status_code == 404
    unsubscribe = path.replace("/m/", "/u/")  # a mute token is no unsubscribe token
    assert client.post(unsubscribe).status_code == 404
