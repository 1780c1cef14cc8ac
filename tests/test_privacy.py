"""Privacy: tracking modes (the strictest of user, send and recipient wins), consent by API, CLI
and link, what each mode keeps, minimisation before storage, a recipient exported and erased,
a user's own retention, and nothing of it in the logs."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon import accounts
from mailbeacon.classify.apple import AppleEgress
from mailbeacon.classify.pipeline import Classifier
from mailbeacon.cli import app
from mailbeacon.ingest.hits import hit_row
from mailbeacon.privacy import Minimising, strictest, truncate
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.tracking.tokens import Target
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import PEER, Persona, path_of, send
from tests.support.peers import Peers
from tests.test_send import body, campaign_args, queued
from tests.test_send import send as send_campaign

READER = "reader@example.test"
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
HTML = '<p>Hello <a href="https://shop.example.test/a">a</a></p>'
YESTERDAY = "2026-11-30T09:00:00Z"
runner = CliRunner()


def stored(db: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.read(lambda conn: conn.execute(sql, params))]


def copy(client: TestClient, alice: Persona, **fields: Any) -> dict[str, Any]:
    return send(client, alice, html=HTML, **{"to": [READER], "sent_at": YESTERDAY, **fields})


def open_it(client: TestClient, message: dict[str, Any], agent: str = THUNDERBIRD) -> None:
    headers = {"User-Agent": agent, "Accept-Language": "fr-FR", "X-Test-Peer": "198.51.100.77"}
    assert client.get(path_of(message["pixel_url"]), headers=headers).status_code == 200


def put(client: TestClient, alice: Persona, path: str, body: dict[str, Any]) -> Any:
    response = client.put(f"/api/v1{path}", json=body, headers=alice.auth)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_strictest_mode_wins() -> None:
    assert strictest("full", "pseudonymous", "anonymous") == "anonymous"
    assert strictest("full") == "full"
    assert strictest("pseudonymous", "off", "full") == "off"
    with pytest.raises(ValueError, match="one of off, anonymous, pseudonymous, full"):
        strictest("everything")


def test_full_keeps_everything_and_a_stricter_user_default_wins(
    client: TestClient, alice: Persona, db: Database
) -> None:
    full = copy(client, alice)
    assert full["tracking"] == "full"
    open_it(client, full)
    put(client, alice, "/settings", {"tracking": "pseudonymous"})
    assert client.get("/api/v1/settings", headers=alice.auth).json()["tracking"] == "pseudonymous"
    asked = copy(client, alice, tracking="full")  # the send asks for more: the user's wins
    assert asked["tracking"] == "pseudonymous"
    open_it(client, asked)
    rows = stored(db, "SELECT message_id, ip, user_agent, accept_language, verdict, client, "
                      "reasons FROM hits ORDER BY id")  # fmt: skip
    assert rows[0][1:6] == ("198.51.100.77", THUNDERBIRD, "fr-FR", "human", "Thunderbird")
    assert rows[1][1:6] == ("", "", "", "human", "Thunderbird")  # verdict and client only
    assert all(r["why"].startswith("Not kept") for r in json.loads(rows[1][6]))


def test_off_leaves_the_copy_as_it_is_and_registers_nothing(
    client: TestClient, alice: Persona, db: Database
) -> None:
    off = copy(client, alice, tracking="off")
    assert (off["id"], off["pixel_url"], off["consent_url"], off["tracking"]) == (
        None, None, None, "off",
    )  # fmt: skip
    assert off["html"] == HTML
    assert off["links"] == []
    assert stored(db, "SELECT COUNT(*) FROM messages") == [(0,)]
    bad = client.post("/api/v1/messages", headers=alice.auth, json={
        "from": alice.email, "to": [READER], "subject": "s", "html": HTML, "tracking": "most",
    })  # fmt: skip
    assert bad.status_code == 422
    assert "tracking: one of off, anonymous, pseudonymous, full" in bad.text


def test_anonymous_counts_without_naming_anyone_and_notifies_nobody(
    client: TestClient, alice: Persona, db: Database
) -> None:
    message = copy(client, alice, tracking="anonymous", campaign="news")
    assert message["consent_url"] is None
    open_it(client, message)
    assert stored(db, "SELECT r.address FROM messages m JOIN recipients r "
                      "ON r.id = m.recipient_id") == [("anonymous",)]  # fmt: skip
    assert stored(db, "SELECT ip, user_agent, verdict FROM hits") == [("", "", "human")]
    assert stored(db, "SELECT COUNT(*) FROM hit_outbox") == [(0,)]  # no event, no alert
    stats = client.get("/api/v1/campaigns/news/stats", headers=alice.auth)
    assert stats.status_code == 200
    assert stats.json()["delivered"] == 1
    assert READER not in stats.text


def test_minimising_truncates_addresses_and_drops_user_agents_before_storage(
    settings: Settings, db: Database, alice: Persona
) -> None:
    keep = Minimising(ip_prefix=24, keep_user_agents=False)
    services = Services.open(dataclasses.replace(settings, minimising=keep))
    with TestClient(Peers(App(services)), base_url="https://t.example.test", client=PEER) as c:
        open_it(c, copy(c, alice), agent=CHROME)
        c.get(path_of(copy(c, alice)["pixel_url"]), headers={"X-Test-Peer": "2001:db8:1:2::7"})
    rows = stored(db, "SELECT ip, user_agent, client FROM hits ORDER BY id")
    assert rows == [("198.51.100.0", "", "Chrome"), ("2001:db8:1::", "", "")]
    assert truncate("not an address", 24) == ""


def test_consent_by_api_cli_and_link_decides_what_a_send_tracks(
    client: TestClient, alice: Persona, db: Database, env: dict[str, str]
) -> None:
    first = copy(client, alice)
    answer = client.get(path_of(first["consent_url"]))  # a scanner's GET changes nothing
    assert answer.status_code == 200
    assert "May alice@example.test see when you read" in answer.text
    assert (
        put(client, alice, f"/recipients/{READER}/consent", {"state": "granted"})["consent"][
            "source"
        ]
        == "api"
    )
    refused = client.post(path_of(first["consent_url"]), data={"consent": "denied"})
    assert "You refuse it now" in refused.text
    found = client.get(f"/api/v1/recipients/{READER}/consent", headers=alice.auth).json()
    assert found["consent"]["state"] == "denied"
    assert found["consent"]["source"] == "link"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*", found["consent"]["at"])
    assert copy(client, alice)["pixel_url"] is None  # denied: no tracking at all

    result = runner.invoke(app, ["recipients", "consent", READER, "granted", "--source",
                                 "signup form", "--user", alice.email], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert copy(client, alice)["tracking"] == "full"

    put(client, alice, "/settings", {"consent_required": True})
    assert copy(client, alice, to=["new@example.test"])["tracking"] == "off"  # unknown: off
    assert copy(client, alice)["tracking"] == "full"  # granted
    put(client, alice, f"/recipients/{READER}/tracking", {"mode": "pseudonymous"})
    assert copy(client, alice)["tracking"] == "pseudonymous"
    forged = client.post("/p/" + "A" * 39, data={"consent": "granted"})
    assert forged.status_code == 404


def test_export_has_everything_about_a_recipient_and_erasure_leaves_nothing_but_a_suppression(
    client: TestClient, alice: Persona, bob: Persona, db: Database, env: dict[str, str]
) -> None:
    message = copy(client, alice, campaign="news")
    open_it(client, message)
    link = path_of(message["links"][0]["tracked_url"])
    client.get(link, headers={"User-Agent": THUNDERBIRD}, follow_redirects=False)
    theirs = send(client, bob, html=HTML, to=[READER])  # another user's recipient of that address
    stored_before = stored(db, "SELECT COUNT(*) FROM hits")
    assert stored_before == [(2,)]
    db.write(lambda conn: conn.execute(
        "INSERT INTO suppressions (user_id, address, reason, message_id, created_at) "
        "VALUES (?, ?, 'unsubscribed', ?, 1)", (alice.id, READER, message["id"]),
    ))  # fmt: skip

    exported = client.get(f"/api/v1/recipients/{READER}/export", headers=alice.auth)
    assert exported.status_code == 200
    data = exported.json()
    assert [m["id"] for m in data["messages"]] == [message["id"]]
    assert {h["kind"] for h in data["hits"]} == {"open", "click"}
    assert data["links"][0]["url"] == "https://shop.example.test/a"
    assert data["suppressions"][0]["reason"] == "unsubscribed"
    assert theirs["id"] not in exported.text  # bob's is bob's

    erased = client.delete(f"/api/v1/recipients/{READER}", headers=alice.auth).json()
    assert erased["removed"]["hits"] == 2
    assert erased["removed"]["messages"] == 1
    assert stored(db, "SELECT COUNT(*) FROM links WHERE message_id = ?", message["id"]) == [(0,)]
    assert stored(db, "SELECT COUNT(*) FROM hits") == [(0,)]  # bob's message was never hit
    assert stored(db, "SELECT COUNT(*) FROM settle_queue") == [(0,)]
    assert stored(db, "SELECT COUNT(*) FROM messages WHERE user_id = ?", alice.id) == [(0,)]
    assert stored(db, "SELECT COUNT(*) FROM messages WHERE user_id = ?", bob.id) == [(1,)]
    assert stored(db, "SELECT COUNT(*) FROM suppressions") == [(1,)]  # kept, and said so
    assert "suppressions" in erased["kept"]
    again = client.get(f"/api/v1/recipients/{READER}/export", headers=alice.auth).json()
    assert again["messages"] == again["hits"] == again["events"] == []
    assert client.get("/api/v1/campaigns/news/stats", headers=alice.auth).status_code in (200, 404)
    result = runner.invoke(app, ["recipients", "export", READER, "--user", bob.email], env=env)
    assert json.loads(result.stdout)["messages"][0]["id"] == theirs["id"]
    result = runner.invoke(
        app, ["recipients", "erase", READER, "--yes", "--user", bob.email], env=env
    )
    assert result.exit_code == 0, result.output
    assert "1 messages" in result.output


def test_an_outsider_cannot_read_or_change_a_recipient(
    client: TestClient, alice: Persona, bob: Persona, db: Database
) -> None:
    copy(client, alice)
    assert client.get(f"/api/v1/recipients/{READER}/export").status_code == 401
    mine = client.get(f"/api/v1/recipients/{READER}/export", headers=bob.auth).json()
    assert mine["messages"] == []
    client.delete(f"/api/v1/recipients/{READER}", headers=bob.auth)
    assert stored(db, "SELECT COUNT(*) FROM messages") == [(1,)]  # alice's stays


def test_a_users_own_retention_removes_only_their_old_hits(
    client: TestClient, alice: Persona, bob: Persona, db: Database, env: dict[str, str]
) -> None:
    for persona in (alice, bob):
        open_it(client, send(client, persona, html=HTML, to=[READER]))
    db.write(lambda conn: conn.execute("UPDATE hits SET at = at - 3 * 86400000000"))
    put(client, alice, "/settings", {"retention_days": 2})
    result = runner.invoke(app, ["prune"], env=env)
    assert result.exit_code == 0, result.output
    assert stored(db, "SELECT user_id FROM hits") == [(bob.id,)]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def test_no_recipient_address_or_hit_address_reaches_the_log(
    client: TestClient, alice: Persona, logged: pytest.LogCaptureFixture
) -> None:
    message = copy(client, alice)
    open_it(client, message)
    put(client, alice, f"/recipients/{READER}/consent", {"state": "granted"})
    client.get(f"/api/v1/recipients/{READER}/export", headers=alice.auth)
    client.delete(f"/api/v1/recipients/{READER}", headers=alice.auth)
    ours = "\n".join(r.getMessage() for r in logged.records if r.name.startswith("mailbeacon"))
    assert READER not in ours  # (the test client logs its own requests' URLs)
    assert "198.51.100.77" not in ours


def test_a_campaign_sends_each_recipient_in_their_mode(
    client: TestClient, alice: Persona, db: Database, env: dict[str, str], tmp_path: Path
) -> None:
    put(client, alice, "/recipients/bob@example.test/consent", {"state": "denied"})
    args = [*campaign_args(tmp_path), "--tracking", "pseudonymous"]
    result = send_campaign(env, alice, args)
    assert result.exit_code == 0, result.output
    by_rcpt = {rcpt: message for rcpt, _, message in queued(db)}
    assert "/o/" in body(by_rcpt["ann@example.test"], "html")
    denied = body(by_rcpt["bob@example.test"], "html")
    assert "/o/" not in denied  # no pixel, links as they were
    assert 'href="https://shop.example.test/help"' in denied
    assert "/u/" in denied  # the unsubscribe link still works: the message is registered
    modes = stored(db, "SELECT r.address, m.tracking FROM messages m JOIN recipients r "
                       "ON r.id = m.recipient_id ORDER BY r.address")  # fmt: skip
    assert modes == [
        ("ann@example.test", "pseudonymous"), ("bob@example.test", "off"),
        ("cy@example.test", "pseudonymous"),
    ]  # fmt: skip
    db.write(lambda conn: conn.execute("UPDATE outbound SET state = 'sent'"))  # delivered
    rates = client.get("/api/v1/campaigns/spring/stats", headers=alice.auth).json()
    assert rates["delivered"] == 2  # an untracked copy is in no rate
    bad = send_campaign(env, alice, [*campaign_args(tmp_path, name="x"), "--tracking", "all"])
    assert bad.exit_code == 1
    assert "--tracking: one of off, anonymous, pseudonymous, full" in bad.output


def test_a_campaign_template_links_to_the_consent_page_untracked(
    client: TestClient, alice: Persona, db: Database, env: dict[str, str], tmp_path: Path
) -> None:
    html = '<p>Hi {{ name }}</p><a href="{{ consent_url }}">Tracking: yes or no?</a>'
    result = send_campaign(env, alice, campaign_args(tmp_path, html=html))
    assert result.exit_code == 0, result.output
    rcpt, message_id, message = queued(db)[0]
    [link] = re.findall(r'href="([^"]+)"', body(message, "html"))
    assert "/p/" in link  # as it is: answering is not a click
    page = client.get(path_of(link))
    assert rcpt in page.text
    client.post(path_of(link), data={"consent": "granted"})
    found = client.get(f"/api/v1/recipients/{rcpt}/consent", headers=alice.auth).json()
    assert (found["consent"]["state"], found["consent"]["source"]) == ("granted", "link")
    assert message_id


def test_the_store_keeps_no_address_for_a_message_not_in_full_whatever_path_the_hit_took(
    client: TestClient, alice: Persona, db: Database, settings: Settings
) -> None:
    """A hit classified without its message (it could not be read) carries everything; storing
    it keeps what the message's mode allows."""
    message = copy(client, alice, tracking="pseudonymous")
    classifier = Classifier(AppleEgress(settings.data, override=settings.apple_egress))
    row = hit_row(
        classifier, Target(message["id"], None), "open", at=accounts.now_us(), method="GET",
        ip="198.51.100.9", headers={"user-agent": THUNDERBIRD}, message=None,
    )  # fmt: skip
    assert (row[5], row[6]) == ("198.51.100.9", THUNDERBIRD)  # as made: everything
    db.write(lambda conn: queries.insert_hits(conn, [row]))
    assert stored(db, "SELECT ip, user_agent FROM hits") == [("", "")]
