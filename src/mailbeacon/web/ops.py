"""What operators and their tools ask a node: ``/healthz`` (the process answers), ``/readyz``
(it can reach its database: a load balancer sends it traffic) and ``/metrics`` (Prometheus text,
with ``prometheus_client``).

The metrics are this process's own (hits stored by kind and verdict, the commit time of their
batches, batches that failed) and the store's (queue depths, read when scraped): with several
nodes, Prometheus sums the first and takes any node's word for the second.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mailbeacon.store import queries
from mailbeacon.store.db import Database, DatabaseError
from mailbeacon.store.writer import Writer

READY_TIMEOUT = 2.0  # seconds for the database to answer /readyz
_KIND, _VERDICT = (
    queries.HIT_FIELDS.split(", ").index("kind"),
    queries.HIT_FIELDS.split(", ").index("verdict"),
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Queues(Collector):
    """Queue depths, read from the store when scraped, and whether it could be read (during an
    outage the node's own metrics, its spool among them, are still scraped)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths = self.db.read(queries.queue_depths)
        except DatabaseError:
            depths = {}
        yield GaugeMetricFamily(
            "mailbeacon_database_up", "Whether the database answered this scrape",
            value=1 if depths else 0,
        )  # fmt: skip
        helps = {
            "outbound": "Copies waiting to be sent upstream",
            "deliveries": "Webhook deliveries waiting for their next attempt",
            "deliveries_failed": "Webhook deliveries given up on after every retry",
            "hit_outbox": "Hits waiting to notify (held close to sending, or not yet settled)",
            "webhooks_disabled": "Webhook endpoints disabled (410, or failing for 5 days)",
        }
        for name, value in depths.items():
            yield GaugeMetricFamily(f"mailbeacon_queue_{name}", helps[name], value=value)


class _Spool(Collector):
    """This node's spool: hits waiting for the database, and those it refused."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def collect(self) -> Iterator[GaugeMetricFamily]:
        spool = self.writer.spool
        yield GaugeMetricFamily(
            "mailbeacon_spool_hits", "Hits answered while the database was out of reach, "
            "waiting on this node's disk to be stored", value=spool.size if spool else 0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "mailbeacon_spool_refused_hits", "Spooled hits the database refused, kept aside",
            value=spool.refused if spool else 0,
        )  # fmt: skip


class Metrics:
    """This process's metrics; ``observe`` is the writer's hook for each batch of hits."""

    def __init__(self, db: Database, writer: Writer) -> None:
        self.registry = CollectorRegistry()
        self.hits = Counter(
            "mailbeacon_hits", "Hits stored, by kind and verdict", ["kind", "verdict"],
            registry=self.registry,
        )  # fmt: skip
        self.commit = Histogram(
            "mailbeacon_hit_commit_seconds", "Time to store one batch of hits durably",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )  # fmt: skip
        self.failed = Counter(
            "mailbeacon_hit_batches_failed", "Batches of hits the store refused or timed out on",
            registry=self.registry,
        )  # fmt: skip
        self.webhooks = Counter(
            "mailbeacon_webhook_attempts", "Webhook delivery attempts this process made, by "
            "outcome (failed: no 2xx, to be retried or given up on)", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_Queues(db))
        self.registry.register(_Spool(writer))

    def observe(self, rows: Sequence[Sequence[Any]], seconds: float, failed: bool) -> None:
        self.commit.observe(seconds)
        if failed:
            self.failed.inc()
            return
        for (kind, verdict), n in Tally((r[_KIND], r[_VERDICT]) for r in rows).items():
            self.hits.labels(kind, verdict).inc(n)

    def attempted(self, delivered: bool) -> None:
        """The dispatcher's hook for each webhook attempt."""
        self.webhooks.labels("delivered" if delivered else "failed").inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    """Ready when the database answers within ``READY_TIMEOUT``; else 503 with the reason. Either
    way, the hits waiting in the node's spool, if any."""
    services = request.app.state.services
    spool = services.writer.spool
    spooled = f"; {spool.size} hits spooled on this node" if spool and spool.size else ""
    try:
        await asyncio.wait_for(services.read(queries.count_users), READY_TIMEOUT)
    except TimeoutError:
        reason = f"the database did not answer within {READY_TIMEOUT:g} s"
    except Exception as exc:  # whatever it is, the node is not ready
        reason = f"the database cannot be reached: {type(exc).__name__}: {exc}".strip()
    else:
        return PlainTextResponse(f"ready{spooled}\n")
    return PlainTextResponse(f"not ready: {reason}{spooled}\n", status_code=503)


async def metrics(request: Request) -> Response:
    services = request.app.state.services
    body = await asyncio.to_thread(
        services.metrics.text
    )  # the queue depths are read from the store
    return Response(body, media_type=CONTENT_TYPE)


ROUTES = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]
