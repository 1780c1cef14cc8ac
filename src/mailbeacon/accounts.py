"""Users (tenants) and their API keys.

An API key is 32 random bytes; only its SHA-256 is stored, so a leaked database holds no usable
key. Lookup by hash needs no constant-time comparison: the hash of a guess reveals nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from mailbeacon.store import queries
from mailbeacon.store.db import Conn

KEY_PREFIX = "mb_"


@dataclass(frozen=True)
class NewUser:
    id: int
    email: str
    api_key: str


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()


def now_us() -> int:
    return time.time_ns() // 1000


def create_user(conn: Conn, email: str, *, is_admin: bool = False) -> NewUser:
    """A user and a first API key (shown once). Raises ``queries.DuplicateUser``."""
    email = email.strip()
    if "@" not in email or any(c.isspace() for c in email) or len(email) > 254:
        raise ValueError(f"not an email address: {email!r}")
    user_id = queries.create_user(conn, email, is_admin=is_admin, now=now_us())
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
