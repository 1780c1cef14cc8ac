"""Settling: later hits of a message revise the provisional verdicts of earlier ones.

A security gateway's pixel fetch can look like a person (a current browser, an address nobody
has listed); it gives itself away when the same gateway then follows *every* link of the
message in one sub-second sweep (RESEARCH.md §1, security gateways: putyourlightson
craft-campaign #546 measured 836 such bursts). No person follows several links within a second.
So once clicks arrive, the message's recent hits are looked at together:

- the clicks of one sweep become ``machine`` (``security_scanner``), revised by ``link_sweep``;
- the pixel fetches from the sweep's network before it, and the unnamed ones (a browser-like
  fetcher, no mail client, no proxy) between sending and the sweep, are the gateway's own look
  at the message: revised too.

Every click is queued for settling with its hit (``settle_queue``) and leaves the queue once
settled, in the transaction that writes the revisions: settling survives restarts, and on
PostgreSQL the settlers of several nodes each lock the clicks they take (``SKIP LOCKED``), so
every click is settled once. Revising is idempotent, so two settlers that read the same hits
(``serve`` and a ``replay`` beside it on SQLite) never disagree.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import anyio.to_thread

from mailbeacon.accounts import now_us
from mailbeacon.background import Background
from mailbeacon.classify.rules import SECOND
from mailbeacon.classify.signatures import builtin
from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer

log = logging.getLogger(__name__)

SWEEP_SPAN = SECOND  # all links of a sweep within one second
SWEEP_LINKS = 2  # distinct links; a person follows one, then reads
LOOKBACK = 15 * 60 * SECOND  # how far before a sweep its gateway's pixel fetch is looked for
MAX_CONTEXT = 5000  # hits of one message read at once, at most
ROUND = 2000  # clicks settled in one transaction
RETRY = 5.0  # seconds after a failed settling
# Pixel fetches that name a mail client or a proxy are the person, even between sending and a
# gateway's sweep; the others in that span are the gateway.
NAMED = frozenset({"gmail_proxy", "yahoo_proxy", "apple_mpp", "outlook_web", "prefetch", "sender"})
RULE = "link_sweep"


@dataclass(frozen=True, slots=True)
class Revision:
    hit_id: int
    agent: str
    confidence: float
    reasons: str  # JSON, the revision first, then what was thought before


@lru_cache(maxsize=16384)
def network(ip: str) -> str:
    """The network a gateway's addresses share: a named provider's whole network (Microsoft's
    Safe Links fetches the pixel and sweeps the links from different addresses of it), else the
    /24 (IPv4) or /48 (IPv6)."""
    for name, networks in builtin().networks.items():
        if ip in networks:
            return name
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def sweeps(clicks: Sequence[queries.SettleHit]) -> list[list[queries.SettleHit]]:
    """Groups of clicks from one network, each within ``SWEEP_SPAN`` of the previous, that
    cover at least ``SWEEP_LINKS`` distinct links."""
    by_network: dict[str, list[queries.SettleHit]] = defaultdict(list)
    for c in clicks:
        by_network[network(c.ip)].append(c)
    found = []
    for group in by_network.values():
        group.sort(key=lambda c: c.at)
        run = [group[0]]
        for c in group[1:]:
            if c.at - run[-1].at <= SWEEP_SPAN:
                run.append(c)
                continue
            found.append(run)
            run = [c]
        found.append(run)
    return [run for run in found if len({c.link for c in run}) >= SWEEP_LINKS]


def _revision(hit: queries.SettleHit, why: str, confidence: float) -> Revision:
    earlier = [r for r in json.loads(hit.reasons) if r.get("rule") != RULE]
    reasons = json.dumps([{"rule": RULE, "why": why}, *earlier], ensure_ascii=False)
    return Revision(hit.id, "security_scanner", confidence, reasons)


def revisions(sent_at: int, hits: Sequence[queries.SettleHit]) -> list[Revision]:
    """What the hits of one message (any order) say about each other."""
    out: dict[int, Revision] = {}
    opens = [h for h in hits if h.kind == "open"]
    for sweep in sweeps([h for h in hits if h.kind == "click"]):
        start, end, net = sweep[0].at, sweep[-1].at, network(sweep[0].ip)
        links = len({c.link for c in sweep})
        seconds = (end - start) / SECOND
        why = f"Followed {links} links within {seconds:.2f} s from one network: a scanner's sweep."
        for c in sweep:
            out[c.id] = _revision(c, why, 0.97)
        for o in opens:
            if o.at > end or o.at < start - LOOKBACK or o.id in out:
                continue
            if network(o.ip) == net:
                why = "Fetched from the network that then swept every link: the same scanner."
                out[o.id] = _revision(o, why, 0.95)
            elif o.agent not in NAMED and o.verdict != "self" and o.at >= sent_at:
                why = "An unnamed fetch between sending and a scanner's sweep: the scanner's look."
                out[o.id] = _revision(o, why, 0.8)
    return [r for r in out.values() if _changes(r, hits)]


def _changes(revision: Revision, hits: Iterable[queries.SettleHit]) -> bool:
    hit = next(h for h in hits if h.id == revision.hit_id)
    return not (hit.verdict == "machine" and hit.revised_by == RULE)


class Pending(NamedTuple):
    revisions: list[Revision]
    clicks: list[int]  # the queued clicks they settle


def settle_pending(conn: Conn, limit: int = ROUND) -> Pending | None:
    """Revisions owed to the oldest clicks of the settle queue (on PostgreSQL locked until the
    transaction ends); None when the queue is empty."""
    clicks = queries.queued_clicks(conn, limit)
    if not clicks:
        return None
    found: list[Revision] = []
    for message_id, (first, last) in _spans(clicks).items():
        # A sweep is sub-second: the clicks around the new ones tell whether there is one, and
        # only then are the opens before it read (messages with many hits stay cheap).
        near = queries.hits_near(
            conn, message_id, first - SWEEP_SPAN, last + SWEEP_SPAN, MAX_CONTEXT, kind="click"
        )
        found_sweeps = sweeps(near.hits)
        if not found_sweeps:
            continue
        start = min(s[0].at for s in found_sweeps)
        end = max(s[-1].at for s in found_sweeps)
        opens = queries.hits_near(conn, message_id, start - LOOKBACK, end, MAX_CONTEXT, kind="open")
        found += revisions(near.sent_at, near.hits + opens.hits)
    return Pending(found, [c.id for c in clicks])


def _spans(clicks: Sequence[queries.SettleHit]) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    for c in clicks:
        first, last = spans.get(c.message_id, (c.at, c.at))
        spans[c.message_id] = (min(first, c.at), max(last, c.at))
    return spans


def apply(conn: Conn, pending: Pending, now: int) -> None:
    """Write the revisions and take their clicks out of the queue, in the caller's
    transaction."""
    queries.revise_hits(conn, pending.revisions, RULE, now)
    queries.mark_settled(conn, pending.clicks)


def _round(conn: Conn, now: int) -> int | None:
    """One round in one transaction: the queued clicks stay locked from reading to settling."""
    pending = settle_pending(conn)
    if pending is None:
        return None
    apply(conn, pending, now)
    return len(pending.revisions)


def settle_all(db: Database, now: int) -> int:
    """Settle everything pending, a transaction a round (replay, tests); the hits revised."""
    revised = 0
    while (n := db.write(_round, now)) is not None:
        revised += n
    return revised


class Settler(Background):
    """Settles in the background of ``serve``, shortly after clicks arrive (a sweep takes
    under a second; waiting a little more lets it finish before it is judged). ``settled`` is
    called after each settling (the clicks are then due to notify)."""

    def __init__(self, db: Database, writer: Writer, delay: float = 1.5) -> None:
        self.db = db
        self.writer = writer
        self.delay = delay
        self.settled: Callable[[], None] = lambda: None
        super().__init__()

    def start(self) -> None:
        super().start()
        self.poke()  # what an earlier run left unsettled (it is poked when a click is stored)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.delay)
            self._wake.clear()
            try:
                await self.settle()
                self.settled()
            except Exception:  # the database out of reach, say: the queue waits for it
                log.exception("settling failed; it is tried again in %g s", RETRY)
                asyncio.get_running_loop().call_later(RETRY, self.poke)

    async def settle(self) -> None:
        if self.db.dialect == "postgresql":
            # A round in a transaction of its own on a thread: the clicks locked while they are
            # settled keep the other nodes' settlers off them.
            while await self.writer.run(_round, now_us()) is not None:
                pass
            return
        # SQLite's writes run on the event loop: the reading is done on a reader thread first
        # (this process is the only settler that writes there; a replay beside it agrees).
        while (pending := await anyio.to_thread.run_sync(self.db.read, settle_pending)) is not None:
            await self.writer.run(apply, pending, now_us())
