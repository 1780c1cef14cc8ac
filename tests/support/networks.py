"""Where the simulated fetchers' requests come from: address pools, one per kind of network.

The facts behind each pool are in /work/shared/RESEARCH.md §1 (cited as "R§1 <row>"). Where
RESEARCH only says what *kind* of network a fetcher uses ("data-centre IPs", "the recipient's
own address"), the ranges below are public ranges of that kind, chosen for illustration; a
classifier that needs this exact list to work would be overfitting the simulator.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def address_in(rng: random.Random, network: Network) -> str:
    """A random address inside ``network`` (avoiding the network address of a real subnet)."""
    size = network.num_addresses
    offset = rng.randrange(1, size) if size > 2 else rng.randrange(size)
    return str(network.network_address + offset)


@dataclass(frozen=True)
class Pool:
    """Addresses of one kind of network; ``pick`` draws one, IPv6 with probability ``ipv6``."""

    name: str
    v4: tuple[Network, ...]
    v6: tuple[Network, ...] = ()

    def pick(self, rng: random.Random, ipv6: float = 0.0) -> str:
        nets = self.v6 if self.v6 and rng.random() < ipv6 else self.v4
        return address_in(rng, rng.choice(nets))

    @property
    def networks(self) -> tuple[Network, ...]:
        return self.v4 + self.v6


# R§1 "Gmail image proxy": Google IPs, e.g. 66.249.80.0/20, 66.102.0.0/20 (P/S).
GOOGLE_PROXY = Pool("google", _nets("66.249.80.0/20", "66.102.0.0/20"))

# R§1 "Outlook.com / Microsoft 365 webmail": loads images from Microsoft's network (AS8075).
MICROSOFT_WEBMAIL = Pool("microsoft_webmail", _nets("40.96.0.0/13", "52.96.0.0/14"))

# R§1 "Security gateways (Microsoft Defender/Safe Links …)" and "Outlook.com …": Safe Links
# detonations come from Microsoft's network; on clicks, Microsoft-network traffic is a scanner.
MICROSOFT_SAFE_LINKS = Pool("microsoft_safe_links", _nets("40.107.0.0/16", "104.47.0.0/17"))

# R§5 (geoip2fast named 98.137.x YAHOO); 74.6.0.0/16 is Yahoo's too. R§1 "Yahoo/AOL mail proxy".
YAHOO_PROXY = Pool("yahoo", _nets("98.137.0.0/16", "74.6.0.0/16"))

# The recipient's own address (R§1: Apple Mail without MPP, Outlook, Thunderbird: "human";
# "Safe Links sends the real click from the reader's own IP"). Consumer ISPs, fixed and mobile.
RESIDENTIAL = Pool(
    "residential",
    _nets(
        "73.0.0.0/8",  # Comcast
        "98.192.0.0/10",  # Comcast
        "79.192.0.0/10",  # Deutsche Telekom
        "91.0.0.0/10",  # Deutsche Telekom
        "86.128.0.0/10",  # BT
        "90.0.0.0/9",  # Orange
    ),
    _nets("2601::/20", "2003::/19", "2a01:cb00::/24"),  # Comcast, Deutsche Telekom, Orange
)
MOBILE = Pool(
    "mobile",
    _nets("172.32.0.0/11", "174.192.0.0/10"),  # T-Mobile US, Verizon Wireless
    _nets("2607:fb90::/32"),  # T-Mobile US
)
# Offices reach the web through one egress address per company (business ISP ranges).
CORPORATE = Pool(
    "corporate",
    _nets("12.0.0.0/8", "4.0.0.0/9", "65.192.0.0/11", "64.125.0.0/16", "217.0.0.0/13"),
)

# R§1 "Security gateways": "data-centre IPs". Per vendor, public data-centre ranges that are
# neither Google's, Microsoft's nor Apple's (which vendor owns which is illustrative).
GATEWAY_POOLS = {
    "mimecast": Pool("mimecast", _nets("205.139.110.0/24", "207.211.30.0/24")),
    "proofpoint": Pool("proofpoint", _nets("148.163.128.0/19", "67.231.144.0/20")),
    "barracuda": Pool("barracuda", _nets("209.222.80.0/21", "64.235.144.0/20")),
    "other": Pool("other", _nets("3.80.0.0/12", "54.144.0.0/14", "95.216.0.0/16")),
    "defender": MICROSOFT_SAFE_LINKS,
}
# R§1 "HTTP libraries and prefetchers": scripts and bots run in data centres.
BOTS = Pool("bots", _nets("51.75.0.0/16", "167.99.0.0/16", "18.204.0.0/14"))


@dataclass(frozen=True)
class AppleRelay:
    """R§1 "Apple Mail Privacy Protection": MPP fetches come from Apple's Private Relay egress
    list (Cloudflare/Akamai/Fastly, not 17.0.0.0/8). Read from the copy in shared/data."""

    pool: Pool

    @classmethod
    def load(cls, directory: Path) -> AppleRelay:
        def read(name: str) -> tuple[Network, ...]:
            lines = (directory / name).read_text().split()
            return tuple(ipaddress.ip_network(line, strict=False) for line in lines)

        return cls(
            Pool(
                "apple_relay",
                read("apple-private-relay-egress-ipv4.txt"),
                read("apple-private-relay-egress-ipv6.txt"),
            )
        )

    def pick(self, rng: random.Random, ipv6: float) -> str:
        return self.pool.pick(rng, ipv6)

    def ranges(self) -> Ranges:
        return Ranges(self.pool.networks)


class Ranges:
    """Fast membership in many networks (binary search over their merged intervals)."""

    def __init__(self, networks: Sequence[Network]) -> None:
        spans = sorted(
            (n.version, int(n.network_address), int(n.broadcast_address)) for n in networks
        )
        self._starts = [(v, lo) for v, lo, _ in spans]
        self._ends = [hi for _, _, hi in spans]

    def __contains__(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        key = (address.version, int(address))
        i = bisect.bisect_right(self._starts, key) - 1
        return i >= 0 and self._starts[i][0] == key[0] and key[1] <= self._ends[i]
