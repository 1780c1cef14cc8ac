"""Verdicts settle: a scanner's sweep of every link revises its earlier pixel fetch."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from mailbeacon.accounts import now_us
from mailbeacon.classify.apple import AppleEgress
from mailbeacon.classify.pipeline import Classifier
from mailbeacon.classify.settle import settle_all
from mailbeacon.ingest.replay import Replayer
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
GATEWAY = "203.0.113.200"
HTML = "".join(f'<a href="https://shop.example.test/{n}">{n}</a> ' for n in range(4))
SENT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def line(url: str, seconds: float, ip: str, agent: str = CHROME) -> str:
    at = (SENT + timedelta(seconds=seconds)).isoformat()
    return json.dumps({"time": at, "url": url, "ip": ip, "headers": {"User-Agent": agent}})


def replay(settings: Settings, db: Database, lines: list[str]) -> Any:
    classifier = Classifier(AppleEgress(settings.data, override=settings.apple_egress))
    return Replayer(db, Signer(settings.secrets), classifier).run(lines)


def hits_of(client: TestClient, alice: Persona, message: dict[str, Any]) -> list[dict[str, Any]]:
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    return found["hits"]  # type: ignore[no-any-return]


def test_a_sweep_of_every_link_revises_the_scanners_pixel_fetch(
    client: TestClient, alice: Persona, settings: Settings, db: Database
) -> None:
    message = send(client, alice, html=HTML, sent_at=SENT.isoformat())
    links = [link["tracked_url"] for link in message["links"]]
    lines = [line(message["pixel_url"], 9, GATEWAY)]
    lines += [line(url, 40 + n * 0.1, GATEWAY) for n, url in enumerate(links)]
    lines.append(line(links[1], 3 * 3600, "198.51.100.20"))  # the reader, hours later
    report = replay(settings, db, lines)
    assert report.revised == 5
    hits = hits_of(client, alice, message)
    assert [h["verdict"] for h in hits] == ["machine"] * 5 + ["human"]
    assert {h["revised_by"] for h in hits[:5]} == {"link_sweep"}
    assert hits[0]["reasons"][0]["rule"] == "link_sweep"
    assert hits[0]["reasons"][1]["rule"] == "browser"  # what it was first taken for
    assert hits[5]["revised_by"] is None


def test_a_person_following_two_links_is_not_a_sweep(
    client: TestClient, alice: Persona, settings: Settings, db: Database
) -> None:
    message = send(client, alice, html=HTML, sent_at=SENT.isoformat())
    links = [link["tracked_url"] for link in message["links"]]
    lines = [line(message["pixel_url"], 600, "198.51.100.20")]
    lines += [line(links[0], 640, "198.51.100.20"), line(links[2], 700, "198.51.100.20")]
    assert replay(settings, db, lines).revised == 0
    assert [h["verdict"] for h in hits_of(client, alice, message)] == ["human"] * 3


def test_replaying_twice_settles_the_same(
    client: TestClient, alice: Persona, settings: Settings, db: Database
) -> None:
    message = send(client, alice, html=HTML, sent_at=SENT.isoformat())
    links = [link["tracked_url"] for link in message["links"]]
    sweep = [line(url, 40 + n * 0.05, GATEWAY) for n, url in enumerate(links)]
    assert replay(settings, db, sweep).revised == 4
    assert replay(settings, db, sweep).revised == 4  # the new copies; the old stay settled
    assert {h["verdict"] for h in hits_of(client, alice, message)} == {"machine"}


def test_live_clicks_settle_in_the_background(
    client: TestClient, alice: Persona, services: Services, tmp_path: Path
) -> None:
    services.settler.delay = 0.05
    message = send(client, alice, html=HTML)
    headers = {"User-Agent": CHROME, "X-Test-Peer": GATEWAY}
    client.get(path_of(message["pixel_url"]), headers=headers)
    for link in message["links"]:
        client.get(path_of(link["tracked_url"]), headers=headers, follow_redirects=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        verdicts = [h["verdict"] for h in hits_of(client, alice, message)]
        if verdicts == ["machine"] * 5:
            break
        time.sleep(0.05)
    assert verdicts == ["machine"] * 5


def test_a_marked_browser_is_the_senders_own(client: TestClient, alice: Persona) -> None:
    url = client.post("/api/v1/self-mark", headers=alice.auth).json()["url"]
    assert client.get(path_of(url)).status_code == 200
    assert client.cookies.get("mb_self")
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": CHROME})
    [hit] = hits_of(client, alice, message)
    assert (hit["verdict"], hit["reasons"][0]["rule"]) == ("self", "sender_browser")
    client.cookies.clear()
    assert client.get("/self/forged").status_code == 404


def test_a_click_committed_after_a_later_one_is_still_settled(
    client: TestClient, alice: Persona, settings: Settings, db: Database
) -> None:
    """Two nodes on one PostgreSQL: the first click of a sweep takes its id first and commits
    last. Settling in between sees only the second; the first is settled once it commits."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: ids are committed in the order they are taken")
    message = send(client, alice, html=HTML, sent_at=SENT.isoformat())
    links = [link["tracked_url"] for link in message["links"]]
    classifier = Classifier(AppleEgress(settings.data, override=settings.apple_egress))
    replayer = Replayer(db, Signer(settings.secrets), classifier)
    first, second = (replayer.row(line(links[n], 40 + n * 0.1, GATEWAY)) for n in range(2))

    async def two_nodes() -> None:  # their writers' live inserts, as serve makes them
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(db.url, autocommit=True) as slow,
            await connect(db.url, autocommit=True) as fast,
            slow.transaction(),
        ):
            await queries.insert_hits_async(slow, [first], 0, 1)  # its id taken first
            await queries.insert_hits_async(fast, [second], 0, 2)
            settled = await asyncio.to_thread(settle_all, db, now_us())
            assert settled == 0  # one link alone is no sweep

    asyncio.run(two_nodes())
    assert settle_all(db, now_us()) == 2
    assert [h["verdict"] for h in hits_of(client, alice, message)] == ["machine"] * 2


def test_two_settlers_take_different_clicks(
    client: TestClient, alice: Persona, settings: Settings, db: Database
) -> None:
    """A settler's clicks stay locked until its transaction ends: another node's settler
    passes over them (PostgreSQL), and every click is settled once."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    message = send(client, alice, html=HTML, sent_at=SENT.isoformat())
    links = [link["tracked_url"] for link in message["links"]]
    replay(settings, db, [line(url, 4000 + n * 60, "198.51.100.20") for n, url in enumerate(links)])
    # Queue the four clicks again, as if just stored.
    db.write(
        lambda c: c.execute("INSERT INTO settle_queue SELECT id FROM hits WHERE kind = 'click'")
    )
    holder = db.connect()
    try:
        with db.transaction(holder) as conn:
            taken = {c.id for c in queries.queued_clicks(conn, 2)}
            other = {c.id for c in db.write(queries.queued_clicks, 10)}  # another node, meanwhile
    finally:
        holder.raw.close()
    assert len(taken) == 2
    assert len(other) == 2
    assert not taken & other
