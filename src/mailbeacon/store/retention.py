"""SQL of retention: which rows are old enough to go, counted and deleted a batch at a time.

A rule names a table and the condition on its rows (``t``) that makes one old, given a cut
(µs); ``retention.py`` says which cut each rule gets. Deleting goes through the table in the
order of an indexed key, one batch a transaction, from where the last batch stopped: no batch
reads again what an earlier one kept, and none holds the writer for long.
"""

from __future__ import annotations

from typing import NamedTuple

from mailbeacon.store.db import Conn


class Rule(NamedTuple):
    table: str
    where: str  # on the table as `t`, with one `?`: the cut
    key: str = "id"  # indexed; batches go through the table in its order
    also: tuple[str, ...] = ()  # run first on each batch: `{batch}` selects its keys


START = -(2**63)  # before every key

# Hits, and their rows in the queues keyed by hit id (no foreign keys: see migrations 5, 8).
HITS = Rule(
    "hits",
    "t.at < ?",
    also=(
        "DELETE FROM hit_outbox WHERE hit_id IN ({batch})",
        "DELETE FROM settle_queue WHERE hit_id IN ({batch})",
    ),
)
# Hits of users with a window of their own (PUT /api/v1/settings {"retention_days"}), given the
# cut `now`: each user's hits older than their window.
USER_HITS = Rule(
    "hits",
    "t.user_id IN (SELECT id FROM users WHERE retention_days > 0) AND t.at < ? - "
    "(SELECT u.retention_days FROM users u WHERE u.id = t.user_id) * 86400000000",
    also=HITS.also,
)
# Each delivery attempt, as the delivery log shows it.
DELIVERY_ATTEMPTS = Rule("delivery_attempts", "t.at < ?")
# Webhook deliveries done with (delivered, or given up on); their attempts cascade. A pending one
# stays however old (its endpoint disabled, it is sent when enabled again).
DELIVERIES = Rule("deliveries", "t.state <> 'pending' AND t.created_at < ?")
# Published events, but for three kinds that stay:
# - the first event of each type for a message: whether one exists is what makes a later open
#   or click `first` or not (notify.notifier), so it stays as long as the message;
# - an event whose delivery is still pending (deleting it would cascade to the delivery);
# - an event waiting for its user's digest (the digest reads it).
EVENTS = Rule(
    "events",
    "t.created_at < ? "
    "AND (t.message_id IS NULL OR EXISTS (SELECT 1 FROM events f "
    "WHERE f.message_id = t.message_id AND f.type = t.type AND f.id < t.id)) "
    "AND t.id NOT IN (SELECT event_id FROM deliveries WHERE state = 'pending') "
    "AND t.id NOT IN (SELECT event_id FROM alert_digest)",
)
# Copies sent that no message refers to: alert emails, digests, untracked relay mail. A tracked
# message's copy stays: it says the message was delivered (statistics, GET /messages/{id}), and
# a bounced one is in the bounces list.
SENT_UNTRACKED = Rule("outbound", "t.state = 'sent' AND t.message_id IS NULL AND t.sent_at < ?")
SESSIONS = Rule("sessions", "t.expires_at <= ?")
# No id: batches go by time (its index), a batch taking every row of its last moment.
LOGIN_FAILURES = Rule("login_failures", "t.at <= ?", key="at")


def count(conn: Conn, rule: Rule, cut: int) -> int:
    row = conn.one(f"SELECT COUNT(*) FROM {rule.table} t WHERE {rule.where}", (cut,))
    return int(row[0]) if row else 0


def delete_batch(conn: Conn, rule: Rule, cut: int, after: int, limit: int) -> tuple[int, int]:
    """Delete the rule's old rows among the next ``limit`` of them past the key ``after``: how
    many went, and the key to go on after (``START`` once there are none left)."""
    key, table = rule.key, rule.table
    row = conn.one(
        f"SELECT MAX(k) FROM (SELECT t.{key} AS k FROM {table} t WHERE t.{key} > ? "
        f"AND {rule.where} ORDER BY t.{key} LIMIT ?) AS batch",
        (after, cut, limit),
    )
    if row is None or row[0] is None:
        return 0, START
    last = int(row[0])
    batch = f"t.{key} > ? AND t.{key} <= ? AND {rule.where}"
    for statement in rule.also:
        conn.execute(
            statement.format(batch=f"SELECT t.{key} FROM {table} t WHERE {batch}"),
            (after, last, cut),
        )
    deleted = conn.execute(
        f"DELETE FROM {table} AS t WHERE {batch} RETURNING 1", (after, last, cut)
    )
    return len(deleted), last


def partition_counts(conn: Conn, cut: int) -> dict[str, int]:
    """PostgreSQL: the hits older than ``cut`` in each partition that has any."""
    rows = conn.execute(
        "SELECT tableoid::regclass::text, COUNT(*) FROM hits WHERE at < ? GROUP BY 1", (cut,)
    )
    return {str(name): int(n) for name, n in rows}
