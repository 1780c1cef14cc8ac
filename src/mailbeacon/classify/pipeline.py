"""From one hit to its verdict: run every rule, weigh the evidence, keep the reasons.

Evidence for one side combines like independent witnesses: two weak hints (0.35 and 0.6) make a
stronger case (0.74) than either. The side with the stronger case wins if it reaches 0.5;
otherwise the verdict is ``unknown``. ``self`` wins outright: the sender's own views are never
counted, whatever else the request looks like. The reasons are the winning side's rules, the
strongest first, so "why was this counted?" always has an answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from mailbeacon.classify.clients import software
from mailbeacon.classify.networks import Networks
from mailbeacon.classify.rules import Context, Evidence, Facts, Hit, Verdict, Where, evidence
from mailbeacon.classify.signatures import Signatures, builtin

DECIDES = 0.5

NO_RULE = Evidence(
    "no_rule", "unknown", None, 0.0, "No rule recognised this fetcher; it is not counted."
)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    agent: str
    confidence: float
    reasons: tuple[Evidence, ...]
    client: str  # the software's name ("" when unknown)
    client_type: str  # desktop | mobile | webmail | proxy | browser | ""
    os: str
    reasons_json: str  # ``reasons`` as stored: made once, since outcomes are cached


def reasons_json(reasons: Sequence[Evidence]) -> str:
    return json.dumps([{"rule": e.rule, "why": e.why} for e in reasons], ensure_ascii=False)


def _strength(found: Sequence[Evidence]) -> float:
    doubt = 1.0
    for e in found:
        doubt *= 1.0 - e.weight
    return 1.0 - doubt


def weigh(found: Sequence[Evidence]) -> tuple[Verdict, str, float, tuple[Evidence, ...]]:
    """The verdict, agent, confidence and reasons a set of evidence comes to."""
    sides: dict[Verdict, list[Evidence]] = {"self": [], "machine": [], "human": []}
    for e in found:
        sides[e.verdict].append(e)
    if sides["self"]:
        winner: Verdict = "self"
    else:
        machine, human = _strength(sides["machine"]), _strength(sides["human"])
        if max(machine, human) < DECIDES or machine == human:
            reasons = tuple(sorted(found, key=lambda e: -e.weight)) or (NO_RULE,)
            return "unknown", "unknown", round(1.0 - max(machine, human), 3), reasons
        winner = "machine" if machine > human else "human"
    reasons = tuple(sorted(sides[winner], key=lambda e: -e.weight))
    agent = next((e.agent for e in reasons if e.agent), "unknown")
    return winner, agent, round(_strength(reasons), 3), reasons


class Egress(Protocol):
    """Apple's relay list as it is now (``classify.apple.AppleEgress`` swaps it on refresh)."""

    @property
    def networks(self) -> Networks: ...


class Classifier:
    """The per-hit pipeline."""

    def __init__(self, apple: Egress, signatures: Signatures | None = None) -> None:
        self.signatures = signatures or builtin()
        self.apple = apple
        self._networks = lru_cache(maxsize=16384)(self._networks_of)
        # Most traffic is a few proxies and clients: the same request, the same verdict.
        self._decide = lru_cache(maxsize=65536)(self._decide_afresh)

    def _networks_of(self, ip: str, apple: Networks) -> Where:
        nets = self.signatures.networks
        return Where(
            ip in apple, ip in nets["google"], ip in nets["microsoft"], ip in nets["datacentre"]
        )

    def classify(self, hit: Hit, ip: str, context: Context) -> Outcome:
        # Keyed by the list in use too: a refreshed list is looked up afresh.
        return self._decide(hit, self._networks(ip, self.apple.networks), context)

    def _decide_afresh(self, hit: Hit, where: Where, context: Context) -> Outcome:
        sw = software(hit.user_agent)
        facts = Facts(sw, where, context, self.signatures)
        verdict, agent, confidence, reasons = weigh(evidence(hit, facts))
        client = self.signatures.clients.get(sw.family)
        if client is not None:
            name, kind = client.name, client.type
        elif sw.family in self.signatures.browsers:
            name, kind = sw.family, "webmail" if hit.kind == "open" else "browser"
        else:
            name, kind = ("" if sw.family == "Other" else sw.family), ""
        if kind in ("desktop", "webmail", "browser") and sw.mobile:
            kind = "mobile"
        # A proxy's User-Agent names a made-up system (Gmail's says Windows XP).
        os = "" if kind == "proxy" else sw.os
        return Outcome(verdict, agent, confidence, reasons, name, kind, os, reasons_json(reasons))
