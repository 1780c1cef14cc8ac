"""Dashboard sessions, and the throttle on signing in.

A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256 (like API
keys), with a CSRF token of its own for the forms of the pages it shows. It lasts 14 days from
its last use, and its last use is written at most once a minute: reading a page costs no write.

**Throttle.** Argon2 makes each guess slow, not rare. After 5 failed sign-ins for one email, or
from one address, within 15 minutes, the next waits until the oldest of those five is 15
minutes old. Failures are rows in the database, so that every node of a PostgreSQL cluster
counts the same ones. An attempt is counted as failed *before* its password is checked, and
uncounted if it succeeds: parallel guesses cannot all slip in while the first are being
checked. A success clears its email's failures, so the owner who finally types the right
password starts afresh. An IPv6 client is counted by its /64, which one machine usually holds
whole.

**API keys** are 256 random bits, which no one guesses; the API still refuses, for 15 minutes,
an address that sent 20 unknown keys within 15 minutes (``KeyGuesses``), so that a client gone
wrong or a scanner does not hammer the key lookup. The failures are rows in the same table (every
node counts them); an address found over the limit is also remembered in the node's memory, so
that its next requests are refused without reading the database, and known keys cost nothing.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from dataclasses import dataclass

from mailbeacon.accounts import PasswordMatch, key_hash
from mailbeacon.store import sessions as store
from mailbeacon.store.db import Conn

LIFETIME = 14 * 86_400_000_000  # µs after the last use
TOUCH_EVERY = 60_000_000  # µs: how stale the last use may be before it is written again
FAILURES = 5
WINDOW = 15 * 60_000_000  # µs


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value, never stored
    csrf: str


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt: what it is counted under, and when."""

    email_key: str
    ip_key: str
    at: int

    @classmethod
    def of(cls, email: str, ip: str, *, at: int) -> Attempt:
        return cls("email:" + email.strip().lower()[:254], network_key(ip), at)


def network_key(ip: str) -> str:
    """What a client is counted under: its address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "ip:" + ip
    prefix = 64 if address.version == 6 else 32
    return "ip:" + str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def throttle(conn: Conn, attempt: Attempt) -> int | None:
    """Seconds to wait before trying again; or None, and the attempt is counted as failed
    until :func:`sign_in` uncounts it."""
    store.lock_attempts(conn)
    store.forget_failures(conn, before=attempt.at - WINDOW)
    keys = (attempt.email_key, attempt.ip_key)
    oldest = [store.nth_latest_failure(conn, key, FAILURES) for key in keys]
    lifted = max((at + WINDOW for at in oldest if at is not None), default=None)
    if lifted is not None:
        return max(1, math.ceil((lifted - attempt.at) / 1_000_000))
    store.add_failures(conn, keys, at=attempt.at)
    return None


def sign_in(conn: Conn, attempt: Attempt, match: PasswordMatch) -> NewSession:
    """The attempt succeeded: a new session for the user."""
    store.clear_attempt(conn, attempt.email_key, attempt.ip_key, at=attempt.at)
    if match.rehashed is not None:
        store.set_password_hash(conn, match.user_id, match.rehashed)
    store.delete_expired_sessions(conn, match.user_id, now=attempt.at)
    new = NewSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    store.insert_session(
        conn, key_hash(new.token), match.user_id, new.csrf,
        now=attempt.at, expires_at=attempt.at + LIFETIME,
    )  # fmt: skip
    return new


def find(conn: Conn, token: str, *, now: int) -> store.Session | None:
    """The live session of a cookie's token."""
    return store.session(conn, key_hash(token), now=now)


def touch(conn: Conn, session_id: int, *, now: int) -> None:
    """The session was used: it lasts ``LIFETIME`` from now."""
    store.touch_session(conn, session_id, now=now, expires_at=now + LIFETIME)


def end(conn: Conn, token: str) -> None:
    store.delete_session(conn, key_hash(token))


KEY_FAILURES = 20  # unknown API keys from one address within WINDOW


def key_failure(conn: Conn, ip: str, *, at: int) -> int | None:
    """Count an unknown API key sent from ``ip``: seconds to wait when it makes
    ``KEY_FAILURES`` within ``WINDOW``, else None."""
    key = "key-" + network_key(ip)
    store.lock_attempts(conn)
    store.forget_failures(conn, before=at - WINDOW)
    store.add_failures(conn, (key,), at=at)
    oldest = store.nth_latest_failure(conn, key, KEY_FAILURES)
    return None if oldest is None else max(1, math.ceil((oldest + WINDOW - at) / 1_000_000))


class KeyGuesses:
    """The addresses this node refuses API calls from until a time (µs), learnt from
    :func:`key_failure`."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    def wait(self, ip: str, now: int) -> int | None:
        """Seconds an address must still wait, or None."""
        until = self._until.get(network_key(ip))
        if until is None:
            return None
        if until <= now:
            del self._until[network_key(ip)]
            return None
        return max(1, math.ceil((until - now) / 1_000_000))

    def refuse(self, ip: str, seconds: int, now: int) -> None:
        if len(self._until) >= 100_000:  # bounded: a flood of addresses empties it
            self._until.clear()
        self._until[network_key(ip)] = now + seconds * 1_000_000
