"""The signature tables (``signatures.toml``), loaded once and typed."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from mailbeacon.classify.networks import Networks


@dataclass(frozen=True)
class ClientSignature:
    agent: str  # the id shown as a hit's agent
    name: str  # what a person calls it
    type: str  # desktop | mobile | webmail | proxy


@dataclass(frozen=True)
class Signatures:
    clients: dict[str, ClientSignature]  # by ua-parser family
    browsers: dict[str, int]  # ua-parser family → oldest major version a person still runs
    automation: tuple[str, ...]
    headless: tuple[str, ...]
    scanners: tuple[str, ...]
    rewrite_hosts: tuple[str, ...]
    networks: dict[str, Networks]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Signatures:
        return cls(
            clients={k: ClientSignature(**v) for k, v in data["clients"].items()},
            browsers={k: int(v) for k, v in data["browsers"].items()},
            automation=tuple(data["automation"]["user_agents"]),
            headless=tuple(data["headless"]["user_agents"]),
            scanners=tuple(data["scanners"]["user_agents"]),
            rewrite_hosts=tuple(data["rewrite_hosts"]["suffixes"]),
            networks={k: Networks(v) for k, v in data["networks"].items()},
        )


@cache
def builtin() -> Signatures:
    text = resources.files(__package__).joinpath("signatures.toml").read_text("utf-8")
    return Signatures.parse(tomllib.loads(text))
