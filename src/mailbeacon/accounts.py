"""Users (tenants), their API keys and their dashboard passwords.

An API key is 32 random bytes; only its SHA-256 is stored, so a leaked database holds no usable
key. Lookup by hash needs no constant-time comparison: the hash of a guess reveals nothing.

A password is chosen by a person, so it is guessable where a key is not: only its argon2id hash
is stored, with argon2-cffi's parameters (RFC 9106's second recommendation: 64 MiB, 3 passes),
which make each guess cost tens of milliseconds and that much memory.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailbeacon.store import queries
from mailbeacon.store import sessions as store
from mailbeacon.store.db import Conn

KEY_PREFIX = "mb_"
MIN_PASSWORD = 10  # characters
_hasher = PasswordHasher()


@dataclass(frozen=True)
class NewUser:
    id: int
    email: str
    api_key: str


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()


def now_us() -> int:
    return time.time_ns() // 1000


def create_user(
    conn: Conn, email: str, *, is_admin: bool = False, password: str | None = None
) -> NewUser:
    """A user and a first API key (shown once), and their password when given (without one,
    they cannot sign in to the dashboard yet). Raises ``queries.DuplicateUser``, or
    ``ValueError`` for an email or password that will not do."""
    email = email.strip()
    if "@" not in email or any(c.isspace() for c in email) or len(email) > 254:
        raise ValueError(f"not an email address: {email!r}")
    user_id = queries.create_user(conn, email, is_admin=is_admin, now=now_us())
    if password is not None:
        set_password(conn, user_id, password)
    return NewUser(user_id, email, add_api_key(conn, user_id))


def add_api_key(conn: Conn, user_id: int) -> str:
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    queries.add_api_key(conn, user_id, key_hash(api_key), api_key[:8], now=now_us())
    return api_key


def login(conn: Conn, email: str, api_key: str) -> int | None:
    """The user whose email and one of whose API keys these are (the SMTP relay's login)."""
    user = queries.user_for_key(conn, key_hash(api_key))
    if user is None or user[1].casefold() != email.strip().casefold():
        return None
    return user[0]


def set_password(conn: Conn, user_id: int, password: str) -> None:
    """Set or reset the user's password, and sign them out everywhere (a reset is often made
    because someone else may know the old one)."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    store.set_password_hash(conn, user_id, _hasher.hash(password))
    store.delete_sessions_of(conn, user_id)


@dataclass(frozen=True)
class PasswordMatch:
    user_id: int
    rehashed: str | None  # argon2's parameters changed since it was hashed: store this instead


@cache
def _unknown_user_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def check_password(conn: Conn, email: str, password: str) -> PasswordMatch | None:
    """The user whose email and password these are, or None.

    An unknown email, or a user without a password, costs the same argon2 verification (against
    a hash of nothing anyone knows), so that the time of the answer does not tell which emails
    have an account. It only reads: the server runs it on a reader's thread, since a
    verification takes tens of milliseconds, and stores ``rehashed`` as it signs the user in.
    """
    found = store.password_of(conn, email)
    stored = found[1] if found else None
    try:
        _hasher.verify(stored or _unknown_user_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if found is None or stored is None:
        return None
    rehashed = _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None
    return PasswordMatch(found[0], rehashed)
