"""What a User-Agent says about the software that sent it, by ua-parser (uap-core's regexes,
compiled resolver: RESEARCH.md §4 measured 13k–16k new UAs/s, 200k+/s cached).

The same few hundred User-Agents make up nearly all traffic, so parses are cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ua_parser

from mailbeacon.classify.signatures import builtin

MOBILE_OS = frozenset({"iOS", "Android", "iPadOS", "Windows Phone", "BlackBerry OS"})


@dataclass(frozen=True, slots=True)
class Software:
    family: str  # ua-parser's family ("Other" when it knows nothing)
    major: int | None
    os: str  # e.g. "Windows 10", "iOS 17"; "" when unknown
    mobile: bool

    @property
    def mail_client(self) -> bool:
        return self.family in builtin().clients

    @property
    def browser(self) -> bool:
        return self.family in builtin().browsers


def warm() -> None:
    """Build ua-parser's resolver now: it is built on first use, which took 130–160 ms here, a
    stall for every request in hand if that use is a request's."""
    ua_parser.parse("")


@lru_cache(maxsize=8192)
def software(user_agent: str) -> Software:
    """The parsed User-Agent; cached, since a few agents make most of the traffic."""
    result = ua_parser.parse(user_agent)
    agent, os = result.user_agent, result.os
    os_name = ""
    if os is not None and os.family != "Other":
        os_name = f"{os.family} {os.major}" if os.major else os.family
    family = agent.family if agent is not None else "Other"
    major = None
    if agent is not None and agent.major and agent.major.isdigit():
        major = int(agent.major)
    return Software(family, major, os_name, os is not None and os.family in MOBILE_OS)
