"""Retention (``mailbeacon prune`` and serve's hourly run), job leases, and PostgreSQL's monthly
partitions of hits."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from mailbeacon import retention
from mailbeacon.accounts import now_us
from mailbeacon.cli import app
from mailbeacon.settings import Settings
from mailbeacon.store import leases, partitions, queries
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer
from tests.conftest import Persona, path_of, send

DAY = retention.DAY
# The middle of the current month: the store's months ahead were made for it (migration 9).
NOW = partitions.Month.of(now_us()).start + 15 * DAY
runner = CliRunner()


def message(db: Database, owner: Persona, message_id: str = "msg1") -> str:
    new = queries.NewMessage(message_id, "reader@example.test", None, owner.email, "Hi", 0, [])
    db.write(queries.save_messages, owner.id, [new], now=NOW)
    return message_id


def hit(message_id: str, at: int, kind: str = "open") -> tuple[Any, ...]:
    """A hit in ``queries.HIT_FIELDS`` order."""
    return (message_id, kind, None, at, "GET", "198.51.100.1", "Thunderbird", "", "", "", "",
            "", "human", "thunderbird", 0.9, "[]", "Thunderbird", "desktop", "Linux")  # fmt: skip


def store_hits(db: Database, rows: list[tuple[Any, ...]]) -> list[int]:
    """Insert through the replay path (on PostgreSQL it makes the months it needs); the ids."""
    db.write(queries.insert_hits, rows)
    return hit_ids(db)


def insert_raw(db: Database, row: tuple[Any, ...]) -> int:
    """Insert one hit as the live path does, without making any month."""
    fields = queries.HIT_FIELDS
    found = db.write(
        lambda conn: conn.one(
            f"INSERT INTO hits (user_id, {fields}) SELECT m.user_id, "
            f"{', '.join('?' * len(row))} FROM messages m WHERE m.id = ? RETURNING id",
            (*row, row[0]),
        )
    )
    assert found is not None
    return int(found[0])


def hit_ids(db: Database) -> list[int]:
    return [int(r[0]) for r in db.read(lambda c: c.execute("SELECT id FROM hits ORDER BY id"))]


def table_of(db: Database, hit_id: int) -> str:
    row = db.read(
        lambda c: c.one("SELECT tableoid::regclass::text FROM hits WHERE id = ?", (hit_id,))
    )
    assert row is not None
    return str(row[0])


def count(db: Database, table: str) -> int:
    row = db.read(lambda c: c.one(f"SELECT COUNT(*) FROM {table}"))
    return int(row[0]) if row else 0


def keeping(settings: Settings, hits: float = 30, ops: float = 30) -> Settings:
    return dataclasses.replace(settings, retention_days=hits, ops_retention_days=ops)


def prune(db: Database, settings: Settings, now: int = NOW) -> retention.Report:
    found = db.read(retention.plan, retention.steps(settings, now))
    return retention.prune(found, db.write)


def needs_postgresql(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite's hits are one table")


# --- leases ---------------------------------------------------------------------------------


def test_of_two_claimers_only_the_first_gets_the_lease(db: Database) -> None:
    assert db.write(leases.claim, "job", now=100, until=200)
    assert not db.write(leases.claim, "job", now=150, until=250)
    assert db.read(leases.held_until, "job") == 200


def test_a_lease_that_ran_out_can_be_claimed(db: Database) -> None:
    assert db.write(leases.claim, "job", now=100, until=200)
    assert db.write(leases.claim, "job", now=200, until=300)
    assert db.read(leases.held_until, "job") == 300


def test_a_released_lease_is_free_at_once_but_only_the_holders_release_counts(
    db: Database,
) -> None:
    assert db.write(leases.claim, "job", now=100, until=200)
    assert db.write(leases.claim, "job", now=250, until=400)  # the first holder's ran out
    assert not db.write(leases.release, "job", until=200)  # the first holder is late
    assert not db.write(leases.claim, "job", now=300, until=500)
    assert db.write(leases.release, "job", until=400)
    assert db.write(leases.claim, "job", now=300, until=500)


def test_two_nodes_claiming_at_the_same_moment_get_one_lease(db: Database) -> None:
    """The first claim's transaction is still open when the second comes: the second waits for
    it (the row on PostgreSQL, the write lock on SQLite) and then finds the job taken."""
    first = db.connect()
    results: list[bool] = []
    try:
        with db.transaction(first) as conn:
            assert leases.claim(conn, "job", now=100, until=200)
            other = threading.Thread(
                target=lambda: results.append(db.write(leases.claim, "job", now=100, until=300))
            )
            other.start()
            other.join(0.3)
            assert other.is_alive()  # waiting for the first transaction
        other.join(5)
    finally:
        first.raw.close()
    assert results == [False]
    assert db.read(leases.held_until, "job") == 200


def test_leases_of_different_jobs_are_apart(db: Database) -> None:
    assert db.write(leases.claim, "one", now=100, until=200)
    assert db.write(leases.claim, "two", now=100, until=200)


# --- monthly partitions (PostgreSQL) --------------------------------------------------------


def test_hits_land_in_the_table_of_their_month(db: Database, alice: Persona) -> None:
    needs_postgresql(db)
    message(db, alice)
    [live] = store_hits(db, [hit("msg1", NOW)])
    assert table_of(db, live) == partitions.Month.of(NOW).table
    ahead = partitions.months_ahead(NOW)
    assert set(ahead) <= set(db.read(partitions.months))  # made by the migration


def test_replayed_history_gets_the_tables_of_its_months(db: Database, alice: Persona) -> None:
    message(db, alice)
    march = int(datetime(2024, 3, 10, tzinfo=UTC).timestamp()) * 1_000_000
    [old] = store_hits(db, [hit("msg1", march)])
    if db.dialect == "postgresql":
        assert table_of(db, old) == "hits_y2024m03"
        assert count(db, partitions.DEFAULT) == 0


def test_a_hit_of_a_month_without_table_goes_to_the_default_and_moves_when_it_is_made(
    db: Database, alice: Persona
) -> None:
    needs_postgresql(db)
    message(db, alice)
    later = partitions.Month.of(NOW + 400 * DAY)
    stray = insert_raw(db, hit("msg1", later.start + DAY))
    assert table_of(db, stray) == partitions.DEFAULT
    assert db.write(partitions.ensure_months, [later]) == [later]
    assert table_of(db, stray) == later.table
    assert count(db, partitions.DEFAULT) == 0
    assert db.write(partitions.ensure_months, [later]) == []


def test_the_pixels_statements_work_on_the_partitioned_table(
    db: Database, alice: Persona, client: Any
) -> None:
    """The live insert (a CTE with RETURNING, through the server) and settling's update."""
    copy = send(client, alice)
    assert client.get(path_of(copy["pixel_url"])).status_code == 200
    [hit_id] = hit_ids(db)
    db.write(lambda c: c.execute("UPDATE hits SET verdict = 'machine' WHERE id = ?", (hit_id,)))
    found = client.get(f"/api/v1/messages/{copy['id']}", headers=alice.auth).json()
    assert [h["verdict"] for h in found["hits"]] == ["machine"]
    if db.dialect == "postgresql":
        assert table_of(db, hit_id) == partitions.Month.of(now_us()).table


def test_nothing_refers_to_hits_by_a_foreign_key(db: Database) -> None:
    """Migration 9 replaced the table, and a month is dropped whole: a reference would break."""
    needs_postgresql(db)
    rows = db.read(
        lambda c: c.execute("SELECT conname FROM pg_constraint WHERE confrelid = 'hits'::regclass")
    )
    assert rows == []


def test_the_migration_kept_every_index_and_the_sequence_of_ids(db: Database) -> None:
    needs_postgresql(db)
    indexes = db.read(
        lambda c: c.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'hits'::regclass ORDER BY 1"
        )
    )
    assert [r[0] for r in indexes] == [
        "hits_by_message",
        "hits_by_user",
        "hits_clicks",
        "hits_pkey",
    ]
    assert db.read(lambda c: c.one("SELECT pg_get_serial_sequence('hits', 'id')")) == (
        "public.hits_id_seq",
    )


# --- retention ------------------------------------------------------------------------------


def test_hits_are_kept_forever_by_default(db: Database, settings: Settings, alice: Persona) -> None:
    message(db, alice)
    store_hits(db, [hit("msg1", NOW - 1000 * DAY)])
    assert prune(db, settings).removed.get("hits", 0) == 0
    assert len(hit_ids(db)) == 1


def test_it_removes_the_hits_older_than_the_window_and_nothing_else(
    db: Database, settings: Settings, alice: Persona
) -> None:
    message(db, alice)
    ancient, older, newer, recent = store_hits(
        db,
        [hit("msg1", NOW - 100 * DAY), hit("msg1", NOW - 31 * DAY, "click"),
         hit("msg1", NOW - 29 * DAY), hit("msg1", NOW - DAY)],
    )  # fmt: skip
    stray = insert_raw(db, hit("msg1", NOW - 2000 * DAY))  # PostgreSQL: the default partition
    db.write(lambda c: c.executemany(
        "INSERT INTO hit_outbox (hit_id, user_id, due_at) VALUES (?, ?, 0)",
        [(ancient, alice.id), (older, alice.id), (recent, alice.id)],
    ))  # fmt: skip
    report = prune(db, keeping(settings, hits=30))
    assert hit_ids(db) == [newer, recent]
    assert report.removed["hits"] == 3
    outbox = db.read(lambda c: c.execute("SELECT hit_id FROM hit_outbox"))
    assert outbox == [(recent,)]
    assert db.read(lambda c: c.execute("SELECT hit_id FROM settle_queue")) == []
    if db.dialect == "postgresql":
        assert report.months == [partitions.Month.of(NOW - 100 * DAY).table]
        assert partitions.Month.of(NOW - 100 * DAY) not in db.read(partitions.months)
        assert count(db, partitions.DEFAULT) == 0
    assert stray not in hit_ids(db)


def test_it_deletes_in_batches(db: Database, settings: Settings, alice: Persona) -> None:
    message(db, alice)
    store_hits(db, [hit("msg1", NOW - 40 * DAY + n) for n in range(12)])
    store_hits(db, [hit("msg1", NOW)])
    found = db.read(retention.plan, retention.steps(keeping(settings, hits=30), NOW))
    batches: list[int] = []

    def write(fn: Any) -> Any:
        result = db.write(fn)
        if isinstance(result, tuple):
            batches.append(result[0])
        return result

    original = retention.BATCH
    retention.BATCH = 5
    try:
        report = retention.prune(found, write)
    finally:
        retention.BATCH = original
    assert report.removed["hits"] == 12
    if db.dialect == "sqlite":
        assert batches[:3] == [5, 5, 2]
    assert len(hit_ids(db)) == 1


def test_it_removes_old_operational_rows_and_keeps_what_is_still_needed(
    db: Database, settings: Settings, alice: Persona
) -> None:
    message(db, alice)
    old, new = NOW - 31 * DAY, NOW - 29 * DAY

    def setup(c: Conn) -> None:
        c.execute(
            "INSERT INTO webhooks (id, user_id, url, events, raw_hits, secrets, created_at) "
            "VALUES ('wh_1', ?, 'https://example.test/', '[]', FALSE, '[]', 0)",
            (alice.id,),
        )
        events = [("e1", "msg1", old), ("e2", "msg1", old), ("e3", "msg1", new), ("e4", None, old),
                  ("e5", "msg1", old), ("e6", "msg1", old)]  # fmt: skip
        for public_id, message_id, at in events:
            c.execute(
                "INSERT INTO events (public_id, user_id, type, message_id, created_at, data) "
                "VALUES (?, ?, 'email.opened', ?, ?, '{}')",
                (public_id, alice.id, message_id, at),
            )
        ids = dict(c.execute("SELECT public_id, id FROM events"))
        # e5's delivery is pending (its endpoint disabled a month): it stays, and so does e5.
        for event, state in (("e2", "delivered"), ("e5", "pending"), ("e3", "failed")):
            c.execute(
                "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, "
                "created_at) VALUES ('wh_1', ?, ?, 0, ?)",
                (ids[event], state, old if event != "e3" else new),
            )
        c.execute("INSERT INTO alert_digest (event_id, user_id, created_at) VALUES (?, ?, ?)",
                  (ids["e6"], alice.id, old))  # fmt: skip
        c.execute(
            "INSERT INTO delivery_attempts (delivery_id, webhook_id, at, status, duration_us) "
            "SELECT id, webhook_id, created_at, 200, 1 FROM deliveries"
        )
        c.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at, "
            "last_seen_at) VALUES ('gone', ?, '', 0, ?, 0), ('live', ?, '', 0, ?, 0)",
            (alice.id, NOW - 1, alice.id, NOW + DAY),
        )
        c.execute("INSERT INTO login_failures (key, at) VALUES ('ip:x', ?), ('ip:y', ?)",
                  (NOW - 16 * 60_000_000, NOW - 60_000_000))  # fmt: skip
        for message_id, state, at in ((None, "sent", old), (None, "sent", new),
                                      ("msg1", "sent", old), (None, "bounced", old)):  # fmt: skip
            c.execute(
                "INSERT INTO outbound (user_id, message_id, mail_from, rcpt_to, data, state, "
                "next_attempt_at, created_at, sent_at) VALUES (?, ?, 'a@x', 'b@x', ?, ?, ?, ?, ?)",
                (alice.id, message_id, b"mail", state, at, at, at),
            )

    db.write(setup)
    report = prune(db, keeping(settings, hits=0, ops=30))

    def column(sql: str) -> list[Any]:
        return sorted(r[0] for r in db.read(lambda c: c.execute(sql)))

    # e1 is the message's first open (a later open is not `first`), e3 is recent.
    assert column("SELECT public_id FROM events") == ["e1", "e3", "e5", "e6"]
    assert column("SELECT state FROM deliveries") == ["failed", "pending"]
    assert len(column("SELECT id FROM delivery_attempts")) == 1  # the recent failure's
    assert column("SELECT token_hash FROM sessions") == ["live"]
    assert column("SELECT key FROM login_failures") == ["ip:y"]
    assert column("SELECT COALESCE(message_id, state) FROM outbound") == ["bounced", "msg1", "sent"]
    assert report.removed == {
        "delivery attempts": 2, "webhook deliveries": 1, "events": 2,
        "sent alerts and untracked mail": 1, "expired sessions": 1, "failed sign-ins": 1,
    }  # fmt: skip


def test_serve_prunes_on_one_node_an_hour(db: Database, settings: Settings, alice: Persona) -> None:
    message(db, alice)
    store_hits(db, [hit("msg1", NOW - 40 * DAY), hit("msg1", NOW)])
    settings = keeping(settings, hits=30)

    async def two_nodes() -> list[retention.Report | None]:
        writers = [Writer(db), Writer(db)]
        reports = []
        for writer in writers:
            writer.start()
            reports.append(
                await retention.Retention(db, writer, settings, clock=lambda: NOW).round()
            )
        later = retention.Retention(db, writers[1], settings, clock=lambda: NOW + 3_600_000_000)
        reports.append(await later.round())  # the hour is over: the job is free again
        for writer in writers:
            await writer.stop()
        return reports

    first, second, third = asyncio.run(two_nodes())
    assert first is not None
    assert first.removed["hits"] == 1
    assert second is None
    assert third is not None
    assert not third.removed.get("hits")
    assert len(hit_ids(db)) == 1


def test_serve_starts_its_retention(client: Any, db: Database) -> None:
    for _ in range(50):
        if db.read(leases.held_until, retention.JOB):
            return
        threading.Event().wait(0.1)
    raise AssertionError("serve never took the retention job")


def test_prune_prints_what_it_removed(db: Database, env: dict[str, str], alice: Persona) -> None:
    message(db, alice)
    now = now_us()
    store_hits(db, [hit("msg1", now - 40 * DAY), hit("msg1", now - 35 * DAY), hit("msg1", now)])
    env = {**env, "MAILBEACON_RETENTION_DAYS": "30"}
    dry = runner.invoke(app, ["prune", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["removed"]["hits"] == 2
    assert len(hit_ids(db)) == 3
    result = runner.invoke(app, ["prune"], env=env)
    assert result.exit_code == 0, result.output
    assert "│ hits" in result.output
    assert "│ 2" in result.output
    assert len(hit_ids(db)) == 1
    again = runner.invoke(app, ["prune", "--json"], env=env)
    assert json.loads(again.output)["removed"].get("hits", 0) == 0
