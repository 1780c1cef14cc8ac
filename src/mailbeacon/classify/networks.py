"""A fixed set of IP networks that says in a few microseconds whether an address is in it.

Apple's Private Relay egress list alone has 200k+ prefixes and every hit asks about its address,
so testing ``ipaddress`` networks one by one is out of the question. The networks are merged into
sorted, disjoint integer intervals, one pair of sequences per family, and a lookup is one
bisection. Addresses are parsed with ``socket.inet_pton``, about ten times faster than
``ipaddress.ip_address`` and just as strict (no leading zeros, no shorthand such as ``1.2.3``).
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable
from socket import AF_INET, AF_INET6, inet_pton
from typing import NamedTuple

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address a dual-stack socket saw.
_MAPPED_PREFIX = 0xFFFF
_IPV4_MASK = 0xFFFFFFFF
# The longest prefix length worth reading; also keeps int() away from absurdly long digit runs.
_MAX_LENGTH_DIGITS = 3


class Parsed(NamedTuple):
    """What :meth:`Networks.parse_lines` made of a file."""

    networks: Networks
    skipped: int
    """Lines that held something other than a network (blank lines and comments not counted)."""


class Networks:
    """An immutable set of IPv4 and IPv6 networks: ``"192.0.2.1" in networks``.

    Membership takes address text as stored with a hit (or an ``ipaddress`` address); IPv4-mapped
    IPv6 is looked up as IPv4; anything that is not an address is simply not in the set.
    ``len()`` is the number of networks it was built from, before merging.
    """

    __slots__ = ("_count", "_v4_ends", "_v4_starts", "_v6_ends", "_v6_starts")

    _count: int
    _v4_starts: tuple[int, ...]
    _v4_ends: tuple[int, ...]
    _v6_starts: tuple[int, ...]
    _v6_ends: tuple[int, ...]

    def __init__(self, networks: Iterable[str | Network] = ()) -> None:
        """Build from CIDR strings (a bare address is a single host); a bad one is a ValueError.

        Host bits are ignored: ``192.0.2.7/24`` means ``192.0.2.0/24``.
        """
        intervals = []
        for network in networks:
            interval = _interval(str(network).strip())
            if interval is None:
                raise ValueError(f"not an IP network: {str(network)!r}")
            intervals.append(interval)
        self._fill(intervals)

    @classmethod
    def empty(cls) -> Networks:
        return cls()

    @classmethod
    def parse_lines(cls, lines: Iterable[str]) -> Parsed:
        """Networks from the lines of a file: Apple's CSV or one CIDR a line.

        Only the first comma-separated column is read, so Apple's ``prefix,country,region,city,
        postal`` and a plain list read the same way. Blank lines and ``#`` comments are ignored;
        any other line that is not a network is skipped and counted, never fatal.
        """
        intervals = []
        skipped = 0
        for line in lines:
            text = line.split(",", 1)[0].split("#", 1)[0].strip().lstrip("\ufeff")
            if not text:
                continue
            interval = _interval(text)
            if interval is None:
                skipped += 1
            else:
                intervals.append(interval)
        networks = cls.__new__(cls)
        networks._fill(intervals)
        return Parsed(networks, skipped)

    def _fill(self, intervals: list[tuple[bool, int, int]]) -> None:
        self._count = len(intervals)
        self._v4_starts, self._v4_ends = _merge((a, b) for v6, a, b in intervals if not v6)
        self._v6_starts, self._v6_ends = _merge((a, b) for v6, a, b in intervals if v6)

    def __contains__(self, ip: object) -> bool:
        if isinstance(ip, str):
            try:
                if ":" in ip:
                    return self._has_v6(int.from_bytes(inet_pton(AF_INET6, ip), "big"))
                value = int.from_bytes(inet_pton(AF_INET, ip), "big")
            except (OSError, ValueError):  # not an address; ValueError: NUL or surrogates
                return False
            return _within(self._v4_starts, self._v4_ends, value)
        if isinstance(ip, ipaddress.IPv6Address):
            return self._has_v6(int(ip))
        if isinstance(ip, ipaddress.IPv4Address):
            return _within(self._v4_starts, self._v4_ends, int(ip))
        return False

    def _has_v6(self, value: int) -> bool:
        if value >> 32 == _MAPPED_PREFIX:
            return _within(self._v4_starts, self._v4_ends, value & _IPV4_MASK)
        return _within(self._v6_starts, self._v6_ends, value)

    def __len__(self) -> int:
        return self._count

    @property
    def intervals(self) -> int:
        """How many disjoint ranges the networks merged into."""
        return len(self._v4_starts) + len(self._v6_starts)

    def __repr__(self) -> str:
        return f"<Networks: {self._count} networks in {self.intervals} ranges>"


def _interval(text: str) -> tuple[bool, int, int] | None:
    """(is IPv6, first, last address as integers) of a CIDR, or None if it is not one."""
    address, slash, length = text.partition("/")
    v6 = ":" in address
    bits = 128 if v6 else 32
    try:
        value = int.from_bytes(inet_pton(AF_INET6 if v6 else AF_INET, address), "big")
    except (OSError, ValueError):
        return None
    if not slash:
        prefix = bits
    elif length.isascii() and length.isdigit() and len(length) <= _MAX_LENGTH_DIGITS:
        prefix = int(length)
        if prefix > bits:
            return None
    else:
        return None
    host = (1 << (bits - prefix)) - 1
    first = value & ~host
    return v6, first, first | host


def _merge(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sorted, disjoint intervals: overlapping and adjacent ones become one."""
    starts: list[int] = []
    ends: list[int] = []
    for first, last in sorted(intervals):
        if ends and first <= ends[-1] + 1:
            ends[-1] = max(ends[-1], last)
        else:
            starts.append(first)
            ends.append(last)
    return tuple(starts), tuple(ends)


def _within(starts: tuple[int, ...], ends: tuple[int, ...], value: int) -> bool:
    i = bisect_right(starts, value) - 1
    return i >= 0 and value <= ends[i]
