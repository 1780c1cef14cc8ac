"""From a tracking request (live or replayed) to the hit row that is stored.

Everything here is hostile input: headers are cut to a bounded length and kept as text; they are
escaped wherever they are displayed, never here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from mailbeacon.classify.pipeline import Classifier
from mailbeacon.classify.rules import Context, Hit, Kind, MessageFacts
from mailbeacon.privacy import KEEP_ALL, Minimising
from mailbeacon.text import storable
from mailbeacon.tracking.tokens import Target

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_USER_AGENT = 512
MAX_HEADER = 1024


# The same addresses come back again and again (a proxy, a gateway, the peer behind a load
# balancer); parsing one costs more than the rest of a hit's bookkeeping.
@lru_cache(maxsize=16384)
def normalise_ip(text: str) -> str | None:
    """The canonical text of an address; IPv4-mapped IPv6 becomes plain IPv4; None if invalid."""
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def client_ip(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right, skipping the proxies
    themselves; the first address that is not a trusted proxy is the client. Anything a client
    could have written further left is ignored.
    """
    ip = normalise_ip(peer) or peer
    if not trusted or not forwarded_for or not _is_trusted(ip, trusted):
        return ip
    for part in reversed(forwarded_for.split(",")):
        hop = normalise_ip(part)
        if hop is None:
            break
        ip = hop
        if not _is_trusted(hop, trusted):
            break
    return ip


@lru_cache(maxsize=4096)
def _is_trusted(ip: str, trusted: Sequence[Network]) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address in network for network in trusted)


# What a hit keeps of a request's headers, by their lower-case names.
KEPT_HEADERS = frozenset(
    {
        b"user-agent",
        b"accept",
        b"accept-language",
        b"referer",
        b"via",
        b"sec-purpose",
        b"purpose",
        b"x-purpose",
        b"x-forwarded-for",
    }
)


def purpose(headers: Mapping[str, str]) -> str:
    """The prefetch/preview hint a client sent, if any (Sec-Purpose, Purpose, X-Purpose)."""
    return headers.get("sec-purpose") or headers.get("purpose") or headers.get("x-purpose") or ""


_STORED = (
    ("user-agent", MAX_USER_AGENT),
    ("accept", MAX_HEADER),
    ("accept-language", MAX_HEADER),
    ("referer", MAX_HEADER),
    ("via", MAX_HEADER),
)


def clean(value: str, limit: int) -> str:
    """Bounded, storable text: no NUL (PostgreSQL refuses it), no lone surrogates."""
    return storable(value[:limit]) if value else value


def hit_row(
    classifier: Classifier,
    target: Target,
    kind: Kind,
    *,
    at: int,
    method: str,
    ip: str,
    headers: Mapping[str, str],
    message: MessageFacts | None,
    self_user: int | None = None,
    keep: Minimising = KEEP_ALL,
) -> tuple[Any, ...]:
    """A classified hit in ``queries.HIT_FIELDS`` order, with what its message's tracking mode
    and ``keep`` keep of it; ``headers`` has lower-case names.

    ``message`` is what is known of the hit's message (None if it could not be read: the hit
    is classified without it, and the statement that stores it keeps what its message's mode
    allows); ``self_user`` the user a sender's browser mark names.
    """
    method = clean(method, 16)
    stored = [clean(headers.get(name) or "", limit) for name, limit in _STORED]
    user_agent, _accept, _language, referer, via = stored
    hint = clean(purpose(headers), MAX_HEADER)
    outcome = classifier.classify(
        Hit(kind, method, user_agent, hint, referer, via),
        ip,
        Context.of(message, at, ip, self_user),
    )
    row = (
        *(target.message_id, kind, target.link, at, method, ip, *stored, hint),
        *(outcome.verdict, outcome.agent, outcome.confidence, outcome.reasons_json),
        *(outcome.client, outcome.client_type, outcome.os),
    )
    return keep.row(row, message.tracking if message is not None else "full")
