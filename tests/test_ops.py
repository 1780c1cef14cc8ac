"""What operators ask a node: /healthz, /readyz and /metrics (Prometheus text)."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from mailbeacon.settings import Settings
from mailbeacon.store.db import Database
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send
from tests.support.server import free_port

THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_node_that_reaches_its_database_is_ready(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok\n"
    ready = client.get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")


def test_a_node_whose_database_is_unreachable_is_alive_but_not_ready(settings: Settings) -> None:
    nowhere = f"postgresql://mailbeacon@127.0.0.1:{free_port()}/mailbeacon?connect_timeout=1"
    client = TestClient(App(Services.open(dataclasses.replace(settings, db=nowhere))))
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.text.startswith("not ready: the database cannot be reached: ")


def test_metrics_count_hits_by_verdict_and_show_the_queues(
    client: TestClient, alice: Persona
) -> None:
    message = send(client, alice, sent_at="2026-11-30T09:00:00Z")
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": THUNDERBIRD})
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": ""})
    client.get(path_of(message["pixel_url"]), headers={"X-Test-Peer": "192.0.2.25"})  # alice
    answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(answer.text)
    hits = "mailbeacon_hits_total"
    assert found[hits, (("kind", "open"), ("verdict", "human"))] == 1
    assert found[hits, (("kind", "open"), ("verdict", "machine"))] == 1
    assert found[hits, (("kind", "open"), ("verdict", "self"))] == 1
    assert found["mailbeacon_hit_commit_seconds_count", ()] >= 1
    assert found["mailbeacon_hit_batches_failed_total", ()] == 0
    for queue in ("outbound", "deliveries", "deliveries_failed", "hit_outbox", "webhooks_disabled"):
        assert (f"mailbeacon_queue_{queue}", ()) in found


def test_a_read_after_the_server_ended_the_connection_is_answered(db: Database) -> None:
    """After a restart or a failover, each reader's connection is dead: the first read through
    it is made again on a new one (a node is ready again at once, /readyz says so)."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no server to end a connection")
    mine = db.read(lambda conn: conn.one("SELECT pg_backend_pid()"))
    assert mine is not None
    with psycopg.connect(db.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (mine[0],))
    assert db.read(lambda conn: conn.one("SELECT 1")) == (1,)
