"""The signature tables (``signatures.toml``), loaded once and typed."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mailbeacon.classify.networks import Networks
from mailbeacon.settings import SettingsError


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


class SignaturesError(SettingsError):
    """An operator's signatures file (``--signatures``) cannot be used; the message says why."""


def _builtin_data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("signatures.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def builtin() -> Signatures:
    return Signatures.parse(_builtin_data())


def load(extra: Path | None) -> Signatures:
    """The built-in signatures, and the operator's own (``--signatures``) added to them: lists
    are extended, tables (clients, browsers, networks) get new or replaced entries."""
    if extra is None:
        return builtin()
    data = _builtin_data()
    try:
        theirs = tomllib.loads(extra.read_text("utf-8"))
        for name, value in theirs.items():
            if name not in data:
                raise SignaturesError(f"unknown table [{name}]; known: {', '.join(data)}")
            mine = data[name]
            for key, entry in value.items():
                if isinstance(entry, list) and isinstance(mine.get(key), list):
                    mine[key] = [*mine[key], *entry]
                else:
                    mine[key] = entry
        return Signatures.parse(data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SignaturesError(f"{extra}: {exc}") from exc
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise SignaturesError(f"{extra}: not shaped like signatures.toml ({exc})") from exc
