"""Job leases: a background job that must run on one node at a time takes its lease first.

A lease is a row of ``job_leases`` (migration 9): the job's name and the time its holder's
claim runs out. Whoever claims the job while nobody holds it, or once the lease has run out,
gets it; a holder that dies without releasing it only delays the job until then. Times are µs
since the epoch, like every time in the store.

Two ways to use it:

- a job that runs *once a period* across the cluster claims ``until=now + period`` and never
  releases: the others find it taken until the period is over (``retention.Retention``);
- a job that runs *continuously* on one node claims a short lease, claims again before it runs
  out (``claim`` by the holder fails while its lease lasts: keep ``until`` and renew after it),
  and releases it when it stops so that another node takes over at once.
"""

from __future__ import annotations

from mailbeacon.store.db import Conn

# One statement, atomic on both stores. On PostgreSQL, a conflicting INSERT waits for the
# transaction holding the row and then evaluates the WHERE against the committed row (READ
# COMMITTED): of two nodes claiming at once, one gets the lease, the other sees it taken.
# SQLite has one writer at a time.
_CLAIM = (
    "INSERT INTO job_leases (name, lease_until) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET lease_until = excluded.lease_until "
    "WHERE job_leases.lease_until <= ? RETURNING name"
)


def claim(conn: Conn, name: str, *, now: int, until: int) -> bool:
    """Take the job ``name`` until ``until`` if nobody holds it at ``now``; whether we did.

    Commit the transaction soon: on PostgreSQL, other claimers wait for it."""
    return conn.one(_CLAIM, (name, until, now)) is not None


def release(conn: Conn, name: str, *, until: int) -> bool:
    """Give up the lease taken with ``until`` (that ``claim`` returned True for), so that another
    node may take the job at once; whether it was still ours. A lease that ran out and was
    claimed by another node since is theirs, and is left alone."""
    row = conn.one(
        "UPDATE job_leases SET lease_until = 0 WHERE name = ? AND lease_until = ? RETURNING name",
        (name, until),
    )
    return row is not None


def held_until(conn: Conn, name: str) -> int | None:
    """When the job's lease runs out (in the past: nobody holds it); None if never claimed."""
    row = conn.one("SELECT lease_until FROM job_leases WHERE name = ?", (name,))
    return int(row[0]) if row else None
