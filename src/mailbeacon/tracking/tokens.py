"""Compact signed tokens for pixel and link URLs, verified without a database read.

A token is base64url (no padding) of ``kid · message id · [link position] · tag``:

- ``kid`` (1 byte) names the key, so that old mail keeps working after a rotation;
- the message id is 12 random bytes (96 bits: not enumerable);
- a click token adds the link's position in the message (2 bytes);
- ``tag`` is HMAC-SHA256 over the kind (``o`` or ``c``), the kid and the body, cut to 16 bytes,
  compared with :func:`hmac.compare_digest`.

Only the canonical encoding verifies: a token re-encoded with other padding bits is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Kind = Literal["o", "c"]

MESSAGE_ID_BYTES = 12
TAG_BYTES = 16
_OPEN_LEN = 1 + MESSAGE_ID_BYTES + TAG_BYTES
_CLICK_LEN = _OPEN_LEN + 2
_KEY_CONTEXT = b"mailbeacon/tokens/v1"


def new_message_id() -> str:
    """A fresh message id: 16 URL-safe characters."""
    return _b64encode(secrets.token_bytes(MESSAGE_ID_BYTES))


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


@dataclass(frozen=True, slots=True)
class Target:
    """What a verified token names."""

    message_id: str
    link: int | None  # position of the link in the message; None for the pixel


class Signer:
    """Signs with the first secret of the keyring; verifies with any of them."""

    def __init__(self, secrets_newest_first: Iterable[str]) -> None:
        keyring = [_derive(secret) for secret in secrets_newest_first]
        if not keyring:
            raise ValueError("a Signer needs at least one secret")
        self._current = keyring[0]
        self._keys: dict[int, list[bytes]] = {}
        for kid, key in keyring:
            self._keys.setdefault(kid, []).append(key)

    def sign(self, kind: Kind, message_id: str, link: int | None = None) -> str:
        mid = _b64decode(message_id)
        if mid is None or len(mid) != MESSAGE_ID_BYTES:
            raise ValueError(f"not a message id: {message_id!r}")
        if (kind == "c") != (link is not None):
            raise ValueError("click tokens name a link; pixel tokens do not")
        kid, key = self._current
        body = bytes([kid]) + mid + (link.to_bytes(2, "big") if link is not None else b"")
        tag = hmac.digest(key, kind.encode() + body, "sha256")[:TAG_BYTES]
        return _b64encode(body + tag)

    def verify(self, kind: Kind, token: str) -> Target | None:
        """The target a genuine token names, or None for anything else."""
        if len(token) > 64:
            return None
        raw = _b64decode(token)
        if raw is None or len(raw) != (_CLICK_LEN if kind == "c" else _OPEN_LEN):
            return None
        body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        signed = kind.encode() + body
        genuine = False
        for key in self._keys.get(body[0], ()):
            genuine |= hmac.compare_digest(hmac.digest(key, signed, "sha256")[:TAG_BYTES], tag)
        if not genuine:
            return None
        message_id = _b64encode(body[1 : 1 + MESSAGE_ID_BYTES])
        link = int.from_bytes(body[1 + MESSAGE_ID_BYTES :], "big") if kind == "c" else None
        return Target(message_id, link)
