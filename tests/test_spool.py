"""Hits answered while the database is out of reach wait in the node's spool, and are stored
once, in order, when it answers again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from mailbeacon.classify.apple import AppleEgress
from mailbeacon.classify.pipeline import Classifier
from mailbeacon.ingest.replay import Replayer
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.store.spool import Spool, SpoolError
from mailbeacon.store.writer import Writer
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.services import Services
from mailbeacon.web.tracking import GIF
from tests.conftest import Persona, path_of, send

HTML = '<p><a href="https://shop.example.test/a">a</a></p>'


@contextmanager
def outage(db: Database) -> Iterator[None]:
    """The store out of reach. PostgreSQL: the database refuses connections and its sessions
    are ended. SQLite (no server to stop): the hits table is moved away, so writing a hit fails
    as a locked database does."""
    if db.dialect == "sqlite":
        db.write(lambda conn: conn.execute("ALTER TABLE hits RENAME TO hits_away"))
        try:
            yield
        finally:
            db.write(lambda conn: conn.execute("ALTER TABLE hits_away RENAME TO hits"))
        return
    name = db.url.rsplit("/", 1)[1]
    admin = db.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def until(condition: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_hits_answered_during_an_outage_are_stored_once_in_order_afterwards(
    client: TestClient, alice: Persona, db: Database, services: Services
) -> None:
    message = send(client, alice, html=HTML)
    pixel, link = path_of(message["pixel_url"]), path_of(message["links"][0]["tracked_url"])
    assert client.get(link, follow_redirects=False).status_code == 302  # now in the node's cache
    unseen = path_of(send(client, alice, html=HTML)["links"][0]["tracked_url"])
    spool = services.writer.spool
    assert spool is not None
    with outage(db):
        for _ in range(20):
            response = client.get(pixel)
            assert (response.status_code, response.content) == (200, GIF)
        seen = client.get(link, follow_redirects=False)
        assert seen.status_code == 302
        assert seen.headers["location"] == "https://shop.example.test/a"
        unknown = client.get(unseen, follow_redirects=False)
        assert unknown.status_code == 503
        assert unknown.headers["retry-after"] == "30"
        assert spool.size == 21
        ready = client.get("/readyz")  # SQLite still answers, all but for hits
        assert ready.status_code == (503 if db.dialect == "postgresql" else 200)
        assert ready.text.endswith("; 21 hits spooled on this node\n")
        metrics = client.get("/metrics").text
        assert "mailbeacon_spool_hits 21.0" in metrics
    until(lambda: spool.size == 0)
    stored = db.read(
        lambda conn: conn.execute(
            "SELECT kind, at FROM hits WHERE message_id = ? ORDER BY id", (message["id"],)
        )
    )
    assert [kind for kind, _ in stored] == ["click"] + ["open"] * 20 + ["click"]
    assert [at for _, at in stored] == sorted(at for _, at in stored)  # in the order answered
    assert client.get("/readyz").text == "ready\n"
    assert client.get(unseen, follow_redirects=False).status_code == 302
    queued = "SELECT COUNT(*) FROM settle_queue"
    until(lambda: db.read(lambda conn: conn.one(queued)) == (0,))  # the clicks settled too


def rows_of(settings: Settings, db: Database, pixel_url: str, n: int) -> list[tuple[Any, ...]]:
    classifier = Classifier(AppleEgress(settings.data, override=settings.apple_egress))
    replayer = Replayer(db, Signer(settings.secrets), classifier)
    return [
        replayer.row(json.dumps({"time": f"2026-11-20T09:00:0{i}Z", "url": pixel_url,
                                 "ip": "198.51.100.9"}))
        for i in range(n)
    ]  # fmt: skip


def drain(db: Database, path: Path) -> None:
    """A node starting with this spool, stopped once it has drained it."""

    async def run() -> None:
        writer = Writer(db, spool=path)
        writer.start()
        await writer.stop()  # goes on draining a few seconds first

    asyncio.run(run())


def stored_once(db: Database, spool: Spool) -> None:
    """Store the spool's hits as its drainer does, but leave them in the spool: a node killed
    between the two."""
    chunk = spool.oldest(100)
    if db.dialect == "sqlite":
        db.write(queries.drain_spooled, spool.id, chunk, 0)
        return

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
            await queries.drain_spooled_async(conn, spool.id, chunk, 0)

    asyncio.run(run())


def count(db: Database) -> int:
    row = db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits"))
    return int(row[0]) if row else 0


def test_a_drain_done_again_stores_nothing_twice(
    client: TestClient, alice: Persona, settings: Settings, db: Database, tmp_path: Path
) -> None:
    rows = rows_of(settings, db, send(client, alice)["pixel_url"], 3)
    spool = Spool(tmp_path / "spool.db")
    spool.add(rows, None)
    stored_once(db, spool)
    spool.close()
    assert count(db) == 3
    drain(db, tmp_path / "spool.db")
    assert count(db) == 3
    reopened = Spool(tmp_path / "spool.db")
    assert reopened.size == 0
    reopened.close()


def test_a_batch_that_committed_after_all_is_not_stored_again(
    client: TestClient, alice: Persona, settings: Settings, db: Database, tmp_path: Path
) -> None:
    """A live batch whose answer never came may have committed: its row in hit_batches says."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite commits on the loop: a failed commit did not happen")
    committed, lost = (rows_of(settings, db, send(client, alice)["pixel_url"], 2) for _ in "ab")

    async def commit() -> None:
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
            await queries.insert_hits_async(conn, committed, 0, 1111)

    asyncio.run(commit())
    spool = Spool(tmp_path / "spool.db")
    spool.add(committed, 1111)
    spool.add(lost, 2222)  # sent, and never arrived
    spool.close()
    drain(db, tmp_path / "spool.db")
    assert count(db) == 4


def test_a_hit_the_database_refuses_is_kept_aside_and_the_rest_drain(
    client: TestClient, alice: Persona, settings: Settings, db: Database, tmp_path: Path
) -> None:
    good = rows_of(settings, db, send(client, alice)["pixel_url"], 3)
    bad = list(good[1])
    bad[queries.HIT_FIELDS.split(", ").index("method")] = None  # NOT NULL: never stored
    spool = Spool(tmp_path / "spool.db")
    spool.add([good[0], tuple(bad), good[2]], None)
    spool.close()
    drain(db, tmp_path / "spool.db")
    assert count(db) == 2
    reopened = Spool(tmp_path / "spool.db")
    assert (reopened.size, reopened.refused) == (0, 1)
    reopened.close()


def test_one_process_uses_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool.db")
    with pytest.raises(SpoolError, match="give each node its own --data"):
        Spool(tmp_path / "spool.db")
    first.close()
    Spool(tmp_path / "spool.db").close()
