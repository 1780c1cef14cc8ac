"""Compact signed tokens for pixel and link URLs, verified without a database read.

A token is base64url (no padding) of ``message id · kid · [link position] · tag``:

- the message id is 12 random bytes (96 bits: not enumerable); being first and a multiple of
  three bytes long, it is the token's first 16 characters, so verifying needs no re-encoding;
- ``kid`` (1 byte) names the key, so that old mail keeps working after a rotation;
- a click token adds the link's position in the message (2 bytes);
- ``tag`` is HMAC-SHA256 over the kind (``o`` or ``c``) and everything before it, cut to
  16 bytes, compared with :func:`hmac.compare_digest`.

Only the canonical encoding verifies: a token re-encoded with other spare bits in its last
character, or with padding, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from typing import Literal, NamedTuple

Kind = Literal["o", "c", "u", "m", "p"]  # open, click, unsubscribe, mute alerts, privacy

MESSAGE_ID_BYTES = 12
TAG_BYTES = 16
_USER_BYTES = 8
_KEY_CONTEXT = b"mailbeacon/tokens/v2"
_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_MID_CHARS = MESSAGE_ID_BYTES * 4 // 3
# Characters of a token, and the unused low bits of its last character (which must be zero):
# 29 bytes take 39 characters with 2 bits to spare, 31 bytes take 42 with 4.
_SHAPE = {"o": (39, 0b11), "c": (42, 0b1111), "u": (39, 0b11), "m": (39, 0b11), "p": (39, 0b11)}


def new_message_id() -> str:
    """A fresh message id: 16 URL-safe characters, never starting with "-" (a command line
    would take ``mailbeacon explain -v…`` for an option); 95.3 bits of randomness instead of 96."""
    while (message_id := _b64encode(secrets.token_bytes(MESSAGE_ID_BYTES))).startswith("-"):
        pass
    return message_id


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _b64encode(raw) == text else None


def _derive(secret: str) -> tuple[int, bytes]:
    """The token key for a secret, and its one-byte id (two secrets may share an id)."""
    key = hmac.digest(secret.encode(), _KEY_CONTEXT, "sha256")
    return hashlib.sha256(key).digest()[0], key


class _Key:
    """An HMAC-SHA256 key whose two padded blocks are hashed once (RFC 2104 §4 suggests it):
    every tracking request checks a tag, in 0.7 µs this way against 2.4 µs by
    :func:`hmac.digest` here. The tags are HMAC-SHA256's (tests.test_tokens)."""

    __slots__ = ("_inner", "_key", "_outer")

    def __init__(self, key: bytes) -> None:
        self._key = key
        block = key.ljust(hashlib.sha256().block_size, b"\0")  # a derived key: 32 bytes
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __reduce__(self) -> tuple[type[_Key], tuple[bytes]]:
        return _Key, (self._key,)  # a Signer goes to the processes that make a campaign's copies

    def tag(self, message: bytes) -> bytes:
        """The first ``TAG_BYTES`` of the message's HMAC."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]


class Target(NamedTuple):
    """What a verified token names (a named tuple: built on every tracking request)."""

    message_id: str
    link: int | None  # position of the link in the message; None for the pixel


class Signer:
    """Signs with the first secret of the keyring; verifies with any of them."""

    def __init__(self, secrets_newest_first: Iterable[str]) -> None:
        keyring = [(kid, _Key(key)) for kid, key in map(_derive, secrets_newest_first)]
        if not keyring:
            raise ValueError("a Signer needs at least one secret")
        self._current = keyring[0]
        self._keys: dict[int, list[_Key]] = {}
        for kid, key in keyring:
            self._keys.setdefault(kid, []).append(key)

    def sign(self, kind: Kind, message_id: str, link: int | None = None) -> str:
        mid = _b64decode(message_id)
        if mid is None or len(mid) != MESSAGE_ID_BYTES:
            raise ValueError(f"not a message id: {message_id!r}")
        if (kind == "c") != (link is not None):
            raise ValueError("click tokens name a link; pixel tokens do not")
        kid, key = self._current
        body = mid + bytes([kid]) + (link.to_bytes(2, "big") if link is not None else b"")
        return _b64encode(body + key.tag(kind.encode() + body))

    def verify(self, kind: Kind, token: str) -> Target | None:
        """The target a genuine token names, or None for anything else."""
        length, spare = _SHAPE[kind]
        if len(token) != length or token.strip(_ALPHABET) or _VALUE[token[-1]] & spare:
            return None
        raw = base64.urlsafe_b64decode(token + "=" * (-length % 4))
        body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        signed = kind.encode() + body
        genuine = False
        for key in self._keys.get(body[MESSAGE_ID_BYTES], ()):
            genuine |= hmac.compare_digest(key.tag(signed), tag)
        if not genuine:
            return None
        link = int.from_bytes(body[MESSAGE_ID_BYTES + 1 :], "big") if kind == "c" else None
        return Target(token[:_MID_CHARS], link)

    def mark(self, user_id: int) -> str:
        """The value that marks a browser as user ``user_id``'s own (their views are ``self``)."""
        kid, key = self._current
        body = user_id.to_bytes(_USER_BYTES, "big") + bytes([kid])
        return _b64encode(body + key.tag(b"s" + body))

    def verify_mark(self, text: str) -> int | None:
        """The user a genuine browser mark names, or None."""
        raw = _b64decode(text) if len(text) < 64 else None
        if raw is None or len(raw) != _USER_BYTES + 1 + TAG_BYTES:
            return None
        body, tag = raw[: _USER_BYTES + 1], raw[_USER_BYTES + 1 :]
        genuine = False
        for key in self._keys.get(body[_USER_BYTES], ()):
            genuine |= hmac.compare_digest(key.tag(b"s" + body), tag)
        return int.from_bytes(body[:_USER_BYTES], "big") if genuine else None
