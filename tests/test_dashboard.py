"""The dashboard's pages over HTTP, on both stores: what each shows, that it is each user's own,
and that what a recipient's request carried is shown as text."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from mailbeacon import accounts
from mailbeacon.store import dashboard as dstore
from mailbeacon.store import leases
from mailbeacon.store.db import Database
from mailbeacon.store.writer import Writer
from mailbeacon.web import charts
from mailbeacon.web.charts import Keeper
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send

PASSWORD = "correct horse battery"  # noqa: S105 (a test user's)
ORIGIN = {"Origin": "https://t.example.test"}
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
)
LONG_AGO = "2026-11-30T09:00:00Z"
LINKS = '<a href="https://shop.example.test/a">a</a> <a href="https://shop.example.test/b">b</a>'


def sign_in(client: TestClient, db: Database, persona: Persona) -> str:
    """Sign ``persona`` in on ``client``; the session's CSRF token."""
    db.write(accounts.set_password, persona.id, PASSWORD)
    answer = client.post(
        "/login", data={"email": persona.email, "password": PASSWORD}, headers=ORIGIN,
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/settings").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def hit(client: TestClient, message: dict[str, Any], agent: str = THUNDERBIRD) -> None:
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": agent.encode()})


@pytest.fixture
def signed_in(client: TestClient, db: Database, alice: Persona) -> str:
    return sign_in(client, db, alice)


def test_every_page_asks_for_a_sign_in_first(client: TestClient) -> None:
    for path in ("/", "/messages", "/campaigns", "/settings", "/messages/x", "/campaigns/x"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")


def test_the_messages_page_filters_by_state_campaign_and_text(
    client: TestClient, alice: Persona, signed_in: str
) -> None:
    opened = send(client, alice, subject="Opened one", campaign="spring", sent_at=LONG_AGO)
    robots = send(client, alice, subject="Robots only", campaign="spring", sent_at=LONG_AGO)
    quiet = send(client, alice, to=["quiet@example.test"], subject="Quiet", sent_at=LONG_AGO)
    hit(client, opened)
    hit(client, robots, "")  # no User-Agent: a machine
    page = client.get("/messages").text
    assert all(m["id"] in page for m in (opened, robots, quiet))
    for state, expected in (("opened", opened), ("machine_only", robots), ("not_opened", quiet)):
        shown = client.get("/messages", params={"state": state}).text
        assert expected["id"] in shown, state
        assert sum(m["id"] in shown for m in (opened, robots, quiet)) == 1, state
    spring = client.get("/messages", params={"campaign": "spring"}).text
    assert quiet["id"] not in spring
    assert opened["id"] in spring
    found = client.get("/messages", params={"q": "QUIET@"}).text
    assert quiet["id"] in found
    assert opened["id"] not in found


def test_a_message_shows_its_timeline_and_this_was_me_makes_a_hit_self(
    client: TestClient, alice: Persona, signed_in: str
) -> None:
    message = send(client, alice, sent_at=LONG_AGO)
    hit(client, message)
    page = client.get(f"/messages/{message['id']}").text
    assert "Thunderbird" in page
    assert "human" in page
    [hit_id] = re.findall(r'id="hit-(\d+)"', page)
    mine = f"/messages/{message['id']}/hits/{hit_id}/mine"
    assert client.post(mine, data={"csrf": "wrong"}, headers=ORIGIN).status_code == 403
    done = client.post(mine, data={"csrf": signed_in}, headers=ORIGIN, follow_redirects=False)
    assert done.status_code == 303
    api = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert (api["hits"][0]["verdict"], api["hits"][0]["revised_by"]) == ("self", "marked_by_sender")
    assert api["state"] == "not_opened"


def test_one_users_pages_show_nothing_of_anothers(
    client: TestClient, db: Database, alice: Persona, bob: Persona
) -> None:
    message = send(client, alice, campaign="secret-plans", sent_at=LONG_AGO)
    sign_in(client, db, bob)
    assert client.get(f"/messages/{message['id']}").status_code == 404
    assert client.get("/campaigns/secret-plans").status_code == 404
    assert message["id"] not in client.get("/messages").text
    assert "secret-plans" not in client.get("/campaigns").text


def test_the_campaign_page_shows_the_honest_rates_and_its_charts(
    client: TestClient, alice: Persona, signed_in: str
) -> None:
    first = send(client, alice, campaign="launch", html=LINKS, sent_at=LONG_AGO)
    send(client, alice, to=["b@example.test"], campaign="launch", sent_at=LONG_AGO)
    hit(client, first)
    client.get(path_of(first["links"][0]["tracked_url"]), headers={"User-Agent": THUNDERBIRD},
               follow_redirects=False)  # fmt: skip
    page = client.get("/campaigns/launch").text
    stats = client.get("/api/v1/campaigns/launch/stats", headers=alice.auth).json()
    assert f"{stats['observed_open_rate'] * 100:.1f}%" in page
    for chart in ("rates", "over-time", "first-open", "verdicts", "agents", "clients", "links"):
        assert f'id="chart-{chart}"' in page
    assert "https://shop.example.test/a" in page


def test_settings_change_tracking_and_alerts_and_add_a_webhook(
    client: TestClient, alice: Persona, signed_in: str
) -> None:
    saved = client.post(
        "/settings", data={"csrf": signed_in, "track_default": "on", "alerts": "digest"},
        headers=ORIGIN,
    )  # fmt: skip
    assert saved.status_code == 200
    found = client.get("/api/v1/settings", headers=alice.auth).json()
    assert (found["track_default"], found["alerts"]) == (True, "digest")
    made = client.post(
        "/settings/webhooks",
        data={"csrf": signed_in, "url": "https://hooks.example.test/in", "events": "email.opened"},
        headers=ORIGIN,
    )
    assert "whsec_" in made.text
    listed = client.get("/api/v1/webhooks", headers=alice.auth).json()["webhooks"]
    assert [(w["url"], w["events"]) for w in listed] == [
        ("https://hooks.example.test/in", ["email.opened"])
    ]
    bad = client.post(
        "/settings/webhooks", data={"csrf": signed_in, "url": "ftp://x", "events": "email.opened"},
        headers=ORIGIN,
    )  # fmt: skip
    assert bad.status_code == 422
    assert "http" in bad.text


HOSTILE = [
    "<script>window.pwned=1</script>",
    '"><img src=x onerror="window.pwned=1">',
    "javascript:window.pwned=1",
    "\u202egnp.exe\u200b",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_what_a_request_carried_is_escaped_on_every_page(
    client: TestClient, alice: Persona, signed_in: str, payload: str
) -> None:
    message = send(client, alice, subject=payload, campaign=payload, sent_at=LONG_AGO)
    hit(client, message, payload)
    pages = [
        "/", "/messages", f"/messages/{message['id']}", "/campaigns",
        client.get("/campaigns").text.split('href="/campaigns/')[1].split('"')[0],
    ]  # fmt: skip
    for path in pages:
        url = path if path.startswith("/") else f"/campaigns/{path}"
        html = client.get(url).text
        assert "<script>window" not in html, url
        assert "<img src=x" not in html, url
        assert 'href="javascript:' not in html, url
        assert "\u202e" not in html, url  # shown as ⟨U+202E⟩, not obeyed


def test_large_campaigns_figures_are_computed_before_anyone_looks_and_kept_fresh(
    client: TestClient, alice: Persona, services: Services, signed_in: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(charts, "LARGE", 2)  # "large": two messages will do here
    first = send(client, alice, campaign="big", sent_at=LONG_AGO)
    send(client, alice, to=["b@example.test"], campaign="big", sent_at=LONG_AGO)
    send(client, alice, campaign="small", sent_at=LONG_AGO)
    keeper = Keeper(services.db, Writer(services.db))
    assert asyncio.run(keeper.keep_due()) == 1  # "big" only
    kept = services.db.read(dstore.kept_figures, alice.id, "big")
    assert kept is not None
    hit(client, first)  # after they were computed
    page = client.get("/campaigns/big").text
    assert 'id="unique-opens">0<' in page  # as kept
    assert asyncio.run(keeper.keep_due()) == 0  # viewed, but fresh for at least 10 s
    later = int(time.time() * 1e6) + 11_000_000
    monkeypatch.setattr(time, "time", lambda: later / 1e6)
    assert asyncio.run(keeper.keep_due()) == 1  # viewed lately and stale: computed again
    assert 'id="unique-opens">1<' in client.get("/campaigns/big").text
    figures = charts.Figures.kept(services.db.read(dstore.kept_figures, alice.id, "big"))
    api = client.get("/api/v1/campaigns/big/stats", headers=alice.auth).json()
    assert figures.stats == api
    assert charts.stale(figures, later + 11_000_000)
    assert not charts.stale(figures, figures.at + 9_000_000)


def test_a_campaigns_figures_are_computed_by_one_node_at_a_time(
    client: TestClient, alice: Persona, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(charts, "LARGE", 1)
    send(client, alice, campaign="big", sent_at=LONG_AGO)
    job, now = f"campaign-figures/{alice.id}/big", int(time.time() * 1e6)
    assert services.db.write(leases.claim, job, now=now, until=now + 60_000_000)  # another node
    keeper = Keeper(services.db, Writer(services.db))
    assert asyncio.run(keeper.keep_due()) == 0  # it is computing them: this node leaves them
    assert services.db.write(leases.release, job, until=now + 60_000_000)
    assert asyncio.run(keeper.keep_due()) == 1
    assert services.db.read(dstore.kept_figures, alice.id, "big") is not None
    assert services.db.read(leases.held_until, job) == 0  # released once kept


def test_the_privacy_settings_are_changed_on_the_settings_page(
    client: TestClient, alice: Persona, signed_in: str
) -> None:
    page = client.get("/settings").text
    assert 'name="tracking" value="full" checked' in page
    assert "keeps each hit" in page
    saved = client.post(
        "/settings/privacy",
        data={"csrf": signed_in, "tracking": "pseudonymous", "consent_required": "on",
              "retention_days": "30"},
        headers=ORIGIN,
    )  # fmt: skip
    assert saved.status_code == 200
    found = client.get("/api/v1/settings", headers=alice.auth).json()
    assert (found["tracking"], found["consent_required"], found["retention_days"]) == (
        "pseudonymous", True, 30,
    )  # fmt: skip
    refused = client.post("/settings/privacy", data={"tracking": "off"}, headers=ORIGIN)
    assert refused.status_code == 403  # no CSRF token: nothing changed
    assert client.get("/api/v1/settings", headers=alice.auth).json()["tracking"] == "pseudonymous"
