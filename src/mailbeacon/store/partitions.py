"""Hits by month on PostgreSQL: ``hits`` is partitioned by range of ``at``, one table a month.

Retention then removes a month of hits by dropping its table instead of deleting its rows one
by one. SQLite's ``hits`` stays one table: none of this runs there.

- ``hits_y2026m12`` holds the hits of December 2026 (UTC), ``at`` in [its first µs, the next
  month's first µs).
- ``hits_default`` takes any hit of a month that has no table, so that an insert never fails;
  a month created later takes its rows out of it.
- ``serve`` keeps the current month and the next two created (``retention.Retention``);
  ``mailbeacon replay`` creates the months of the history it replays (``queries.insert_hits``),
  so that the default partition stays empty in practice.

Creating a month never takes a lock that stops the pixel: the table is made on its own, then
attached, which locks ``hits`` only against other DDL, and the default partition (which
live hits never go to) for the moment of the attach.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # db.py imports migrations.py, which imports this module
    from mailbeacon.store.db import Conn

DEFAULT = "hits_default"
AHEAD = 2  # months created beyond the current one
# Partition DDL, one transaction at a time: serve's upkeep on several nodes, and a replay.
_DDL_LOCK = 0x6D62_7074  # "mbpt"


class Month(NamedTuple):
    year: int
    month: int

    @classmethod
    def of(cls, at: int) -> Month:
        moment = datetime.fromtimestamp(at / 1_000_000, UTC)
        return cls(moment.year, moment.month)

    @classmethod
    def parse(cls, table: str) -> Month | None:
        """The month of a partition's table name; None for another table."""
        if len(table) != 13 or not table.startswith("hits_y") or table[10] != "m":
            return None
        year, month = table[6:10], table[11:]
        return cls(int(year), int(month)) if year.isdigit() and month.isdigit() else None

    @property
    def table(self) -> str:
        return f"hits_y{self.year:04d}m{self.month:02d}"

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    @property
    def start(self) -> int:
        """Its first µs since the epoch."""
        return int(datetime(self.year, self.month, 1, tzinfo=UTC).timestamp()) * 1_000_000

    @property
    def end(self) -> int:
        """The first µs of the next month."""
        return self.next().start


def months_ahead(now: int, ahead: int = AHEAD) -> list[Month]:
    """The month of ``now`` and the ``ahead`` after it."""
    months = [Month.of(now)]
    for _ in range(ahead):
        months.append(months[-1].next())
    return months


def months(conn: Conn) -> list[Month]:
    """The months that have a table, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'hits'::regclass"
    )
    return sorted(m for (name,) in rows if (m := Month.parse(name)) is not None)


def ensure_months(conn: Conn, wanted: Iterable[Month]) -> list[Month]:
    """Create the tables of the months ``wanted`` that have none; those created. Commit soon:
    until then, other partition DDL waits, and so do reads of ``hits`` that reach the default
    partition (an attach locks it)."""
    wanted = sorted(set(wanted))
    if set(months(conn)).issuperset(wanted):
        return []  # without taking the lock: a replay's batches do not queue behind each other
    conn.execute("SELECT pg_advisory_xact_lock(?)", (_DDL_LOCK,))
    have = set(months(conn))
    created = [m for m in wanted if m not in have]
    for month in created:
        table, start, end = month.table, month.start, month.end
        # Its CHECK lets the attach skip scanning the table for rows out of range.
        conn.execute(f"CREATE TABLE {table} (LIKE hits)")
        conn.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_at CHECK (at >= {start} AND at < {end})"
        )
        # What the default partition took of this month (hits dated ahead, or stored before
        # the month had a table) moves into it: the attach refuses while the default has any.
        conn.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE at >= {start} AND at < {end} "
            f"RETURNING *) INSERT INTO {table} SELECT * FROM moved"
        )
        conn.execute(
            f"ALTER TABLE hits ATTACH PARTITION {table} FOR VALUES FROM ({start}) TO ({end})"
        )
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_at")
    return created


def lock_briefly(conn: Conn) -> None:
    """Give up, rather than wait, when a lock is not had within a second: a DDL statement
    waiting for a lock on ``hits`` makes every statement behind it wait too (the pixel's
    inserts, for a dropped month). The job is tried again at its next round."""
    conn.execute("SET LOCAL lock_timeout = '1s'")


def drop_month(conn: Conn, month: Month) -> None:
    """Drop a month's table with its hits, and their rows in the queues keyed by hit id."""
    table = month.table
    for queue, key in (("hit_outbox", "hit_id"), ("settle_queue", "hit_id")):
        conn.execute(f"DELETE FROM {queue} q USING {table} h WHERE h.id = q.{key}")
    lock_briefly(conn)
    conn.execute("SELECT pg_advisory_xact_lock(?)", (_DDL_LOCK,))
    conn.execute(f"DROP TABLE IF EXISTS {table}")


def partition_hits(conn: Conn) -> None:
    """Migration 9 on PostgreSQL: make ``hits`` partitioned by month, keeping every row, column,
    index and id, and the sequence of ids going on where it was. Nothing refers to ``hits(id)``
    by a foreign key (the queues keyed by hit id have none), so the table can be replaced."""
    if conn.dialect != "postgresql":
        return
    row = conn.one("SELECT last_value, is_called FROM hits_id_seq")
    next_id = (int(row[0]) + 1 if row[1] else int(row[0])) if row else 1
    for statement in (
        # Its key and indexes go with it when it is dropped, below, before theirs are made.
        "ALTER TABLE hits RENAME TO hits_unpartitioned",
        "ALTER TABLE hits_unpartitioned ALTER COLUMN id DROP IDENTITY",  # drops hits_id_seq
        # Every column in the same order, with its type, NOT NULL and default.
        "CREATE TABLE hits (LIKE hits_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (at)",
        f"ALTER TABLE hits ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY "
        f"(START WITH {next_id})",  # named hits_id_seq again
        f"CREATE TABLE {DEFAULT} PARTITION OF hits DEFAULT",
    ):
        conn.execute(statement)
    # The months of the hits already stored, and those ahead: every row lands in its month.
    stored = conn.execute(
        "SELECT DISTINCT date_part('year', m), date_part('month', m) FROM (SELECT "
        "date_trunc('month', to_timestamp(at / 1000000.0) AT TIME ZONE 'UTC') AS m "
        "FROM hits_unpartitioned) AS months"
    )
    now = conn.one("SELECT (extract(epoch FROM now()) * 1000000)::bigint")
    ensure_months(
        conn,
        [Month(int(y), int(m)) for y, m in stored] + months_ahead(int(now[0]) if now else 0),
    )
    for statement in (
        "INSERT INTO hits OVERRIDING SYSTEM VALUE SELECT * FROM hits_unpartitioned",
        "DROP TABLE hits_unpartitioned",
        # The same indexes as before; the key must hold the partitioning column.
        "ALTER TABLE hits ADD PRIMARY KEY (id, at)",
        "CREATE INDEX hits_by_message ON hits (message_id, at)",
        "CREATE INDEX hits_by_user ON hits (user_id, id)",
        "CREATE INDEX hits_clicks ON hits (id) WHERE kind = 'click'",
    ):
        conn.execute(statement)
