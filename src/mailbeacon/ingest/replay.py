"""Replay recorded hits (JSON lines) through the same path as live traffic.

Each line is ``{"time", "method", "url", "ip", "headers"}`` (DESIGN.md); the hit is processed as
if it had been received at ``time``. A line that cannot be used is reported with its number and
why; the others are stored in batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from mailbeacon.accounts import now_us
from mailbeacon.classify.pipeline import Classifier
from mailbeacon.classify.rules import Kind
from mailbeacon.classify.settle import settle_all
from mailbeacon.ingest.hits import hit_row, normalise_ip
from mailbeacon.ingest.messages import KnownMessages
from mailbeacon.privacy import KEEP_ALL, Minimising
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.tracking.tokens import Signer, Target

BATCH = 5000


class BadLine(Exception):
    pass


@dataclass
class ReplayReport:
    lines: int = 0
    recorded: int = 0
    revised: int = 0  # earlier verdicts settled by later hits
    bad: list[tuple[int, str]] = field(default_factory=list)


def _time(value: Any) -> int:
    if not isinstance(value, str):
        raise BadLine("time: expected an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadLine(f"time: {exc}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _headers(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadLine("headers: expected an object of strings")
    return {k.lower(): v for k, v in value.items()}


class Replayer:
    def __init__(
        self, db: Database, signer: Signer, classifier: Classifier, keep: Minimising = KEEP_ALL
    ) -> None:
        self.db = db
        self.signer = signer
        self.classifier = classifier
        self.keep = keep
        self._links: dict[str, list[str]] = {}
        self._messages = KnownMessages()
        # A message's pixel and links come back again and again in a log: verified once each.
        self._target = lru_cache(maxsize=65536)(self._verify)

    def _has_link(self, message_id: str, position: int) -> bool:
        links = self._links.get(message_id)
        if links is None:
            links = self._links[message_id] = self.db.read(queries.links_of, message_id)
        return position < len(links)

    def _verify(self, url: str) -> tuple[Kind, Target]:
        path = urlsplit(url).path
        kind: Kind
        if path.startswith("/o/") and path.endswith(".gif"):
            kind, target = "open", self.signer.verify("o", path[3:-4])
        elif path.startswith("/c/"):
            kind, target = "click", self.signer.verify("c", path[3:])
        else:
            raise BadLine("url: not a tracking URL (/o/….gif or /c/…)")
        if target is None:
            raise BadLine("url: the token is not genuine")
        return kind, target

    def row(self, line: str) -> tuple[Any, ...]:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise BadLine(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadLine("expected a JSON object")
        method = data.get("method", "GET")
        if method not in ("GET", "HEAD"):
            raise BadLine(f"method: {method!r} is not GET or HEAD")
        url = data.get("url")
        if not isinstance(url, str):
            raise BadLine("url: expected a string")
        kind, target = self._target(url)
        if target.link is not None and not self._has_link(target.message_id, target.link):
            raise BadLine("url: no such link")
        ip = normalise_ip(data.get("ip", "")) if isinstance(data.get("ip"), str) else None
        if ip is None:
            raise BadLine("ip: expected an IPv4 or IPv6 address")
        at, headers = _time(data.get("time")), _headers(data.get("headers"))
        message = self._messages.get(target.message_id)
        if target.message_id not in self._messages:
            message = self.db.read(self._messages.read, target.message_id)
        return hit_row(
            self.classifier, target, kind, at=at, method=method, ip=ip, headers=headers,
            message=message, keep=self.keep,
        )  # fmt: skip

    def run(
        self, lines: Iterable[str], progress: Callable[[int], None] = lambda n: None
    ) -> ReplayReport:
        report = ReplayReport()
        batch: list[tuple[Any, ...]] = []
        for number, line in enumerate(lines, start=1):
            report.lines = number
            progress(len(line))
            if not line.strip():
                continue
            try:
                batch.append(self.row(line))
            except BadLine as exc:
                report.bad.append((number, str(exc)))
                continue
            if len(batch) >= BATCH:
                report.recorded += self._flush(batch)
        report.recorded += self._flush(batch)
        # Later hits revise earlier ones (a scanner's sweep): when replay returns, every verdict
        # reflects every hit replayed.
        report.revised = settle_all(self.db, now_us())
        return report

    def _flush(self, batch: list[tuple[Any, ...]]) -> int:
        if batch:
            self.db.write(queries.insert_hits, batch)
        n = len(batch)
        batch.clear()
        return n
