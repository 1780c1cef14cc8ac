"""SQL of signing in to the dashboard: password hashes, sessions, and failed sign-ins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from mailbeacon.store.db import Conn

# PostgreSQL: sign-in attempts are counted one transaction at a time (a transaction-scoped
# advisory lock), so that parallel attempts cannot all see four failures and all go ahead.
# SQLite has one writer anyway.
_ATTEMPTS_LOCK = 0x6D62_6C67  # "mblg"


# --- passwords ------------------------------------------------------------------------------


def password_of(conn: Conn, email: str) -> tuple[int, str | None] | None:
    """The user of this email (in any case) and their password hash, NULL when they have none."""
    row = conn.one(
        "SELECT id, password_hash FROM users WHERE lower(email) = lower(?) ORDER BY id LIMIT 1",
        (email.strip(),),
    )
    return (int(row[0]), row[1]) if row else None


def set_password_hash(conn: Conn, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


# --- sessions -------------------------------------------------------------------------------


class Session(NamedTuple):
    id: int
    user_id: int
    email: str
    is_admin: bool
    csrf: str
    last_seen_at: int


def insert_session(
    conn: Conn, token_hash: str, user_id: int, csrf: str, *, now: int, expires_at: int
) -> None:
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at, last_seen_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, user_id, csrf, now, expires_at, now),
    )


def session(conn: Conn, token_hash: str, *, now: int) -> Session | None:
    """The session of this token, unless it has expired."""
    row = conn.one(
        "SELECT s.id, s.user_id, u.email, u.is_admin, s.csrf, s.last_seen_at "
        "FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.token_hash = ? AND s.expires_at > ?",
        (token_hash, now),
    )
    if row is None:
        return None
    return Session(int(row[0]), int(row[1]), row[2], bool(row[3]), row[4], int(row[5]))


def touch_session(conn: Conn, session_id: int, *, now: int, expires_at: int) -> None:
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id = ?",
        (now, expires_at, session_id),
    )


def delete_session(conn: Conn, token_hash: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))


def delete_sessions_of(conn: Conn, user_id: int) -> None:
    conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))


def delete_expired_sessions(conn: Conn, user_id: int, *, now: int) -> None:
    conn.execute("DELETE FROM sessions WHERE user_id = ? AND expires_at <= ?", (user_id, now))


# --- failed sign-ins ------------------------------------------------------------------------


def lock_attempts(conn: Conn) -> None:
    """Count sign-in attempts alone until the transaction ends (PostgreSQL)."""
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_ATTEMPTS_LOCK,))


def forget_failures(conn: Conn, *, before: int) -> None:
    conn.execute("DELETE FROM login_failures WHERE at <= ?", (before,))


def nth_latest_failure(conn: Conn, key: str, n: int) -> int | None:
    """When the ``n``-th most recent failure of this key was, if it has had ``n``."""
    row = conn.one(
        "SELECT at FROM login_failures WHERE key = ? ORDER BY at DESC LIMIT 1 OFFSET ?",
        (key, n - 1),
    )
    return int(row[0]) if row else None


def add_failures(conn: Conn, keys: Sequence[str], *, at: int) -> None:
    conn.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)", [(k, at) for k in keys])


def clear_attempt(conn: Conn, email_key: str, ip_key: str, *, at: int) -> None:
    """A sign-in succeeded: every failure of its email, and the address's one counted at ``at``
    (itself, counted as failed until it succeeded)."""
    conn.execute(
        "DELETE FROM login_failures WHERE key = ? OR (key = ? AND at = ?)", (email_key, ip_key, at)
    )
