"""Faults, with real processes: two ``serve`` nodes on one PostgreSQL under load while the
database stops for 10 s, a node killed with ``kill -9`` while hits wait in its spool, and a
webhook receiver that is down for a while.

Every pixel request carries a User-Agent of its own, so that the hits stored can be matched one
for one with the answers the clients received: each answered hit is stored exactly once.
"""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailbeacon import accounts
from mailbeacon.store.db import Database
from tests.conftest import SECRET
from tests.support.postgres import TemporaryPostgres
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess, free_port

CLIENTS = 8  # load threads, spread over the nodes
OUTAGE = 10.0  # seconds PostgreSQL is stopped
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
NODE_ENV = {
    "MAILBEACON_TRUSTED_PROXIES": "127.0.0.1/32",
    "MAILBEACON_ALLOW_PRIVATE_WEBHOOKS": "1",
    "MAILBEACON_APPLE_EGRESS_REFRESH": "0",
}


@pytest.fixture
def pg() -> Iterator[TemporaryPostgres]:
    """A PostgreSQL server of this test's own, which it may stop."""
    server = TemporaryPostgres(durable=True).start()
    yield server
    server.stop()


@dataclass
class Cluster:
    pg: TemporaryPostgres
    url: str
    root: Path
    nodes: list[ServerProcess] = field(default_factory=list)

    def node(self, name: str) -> ServerProcess:
        server = ServerProcess(self.root / name, self.url, SECRET, NODE_ENV)
        self.nodes.append(server)
        return server

    def stop(self) -> None:
        for server in self.nodes:
            if server.process.poll() is None:
                server.kill()


@pytest.fixture
def cluster(pg: TemporaryPostgres, tmp_path: Path) -> Iterator[Cluster]:
    url = pg.create_database("mailbeacon")
    Database(url).migrate()
    found = Cluster(pg, url, tmp_path)
    yield found
    found.stop()


def api(server: ServerProcess, key: str, path: str, body: dict[str, Any]) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 201, data
    return json.loads(data)


def pixel_of(server: ServerProcess, key: str) -> str:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = {"from": "alice@example.test", "to": ["r@example.test"], "subject": "s",
            "html": "<p>hello</p>", "sent_at": yesterday}  # fmt: skip
    url: str = api(server, key, "/api/v1/messages", body)["messages"][0]["pixel_url"]
    return url.split("://", 1)[1].split("/", 1)[1]


class Load:
    """Threads fetching a pixel on keep-alive connections, round robin over the nodes' ports;
    each request with a User-Agent of its own. Records what was answered, and how."""

    def __init__(self, ports: list[int], path: str) -> None:
        self.ports = ports
        self.path = "/" + path
        self.answered: set[str] = set()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        port = self.ports[n % len(self.ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in itertools.count():
            if self._stop.is_set():
                break
            agent = f"{THUNDERBIRD} load/{n}/{i}"
            try:
                conn.request("GET", self.path, headers={"User-Agent": agent})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                time.sleep(0.05)
                continue
            with self._lock:
                self.statuses[response.status] += 1
                if response.status == 200:
                    self.answered.add(agent)
        conn.close()


def stored_agents(url: str) -> Counter[str]:
    with Database(url) as db:
        rows = db.read(lambda conn: conn.execute("SELECT user_agent FROM hits"))
    return Counter(str(agent) for (agent,) in rows)


def drained(server: ServerProcess, seconds: float = 60) -> None:
    """Until the node reaches its database and its spool is empty."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().read() == b"ready\n":
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise AssertionError(f"the node did not drain its spool: {server.log.read_text()[-3000:]}")


def every_answer_stored_once(load: Load, url: str) -> None:
    stored = stored_agents(url)
    twice = [agent for agent, n in stored.items() if n > 1]
    missing = load.answered - set(stored)
    assert not twice, f"{len(twice)} hits stored twice, e.g. {twice[:3]}"
    assert not missing, f"{len(missing)} answered hits not stored, e.g. {sorted(missing)[:3]}"


def test_two_nodes_answer_every_pixel_while_postgresql_stops_for_ten_seconds(
    cluster: Cluster,
) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    user = Database(cluster.url).write(accounts.create_user, "alice@example.test")
    path = pixel_of(a, user.api_key)
    with Load([a.port, b.port], path) as load:
        time.sleep(2)
        cluster.pg.halt()
        stopped = time.monotonic()
        time.sleep(OUTAGE)
        during = load.statuses[200]
        cluster.pg.resume()
        assert time.monotonic() - stopped >= OUTAGE
        time.sleep(3)
    drained(a)
    drained(b)
    assert set(load.statuses) == {200}, load.statuses  # not one answer but the GIF
    assert not load.errors, load.errors
    assert during > 500  # the load went on while the database was down
    every_answer_stored_once(load, cluster.url)


def test_hits_spooled_by_a_node_killed_with_kill_9_are_stored_after_its_restart(
    cluster: Cluster,
) -> None:
    a = cluster.node("a")
    user = Database(cluster.url).write(accounts.create_user, "alice@example.test")
    path = pixel_of(a, user.api_key)
    cluster.pg.halt()
    with Load([a.port], path) as load:
        time.sleep(2)
        a.kill(signal.SIGKILL)  # with the hits of the outage in its spool
    assert load.statuses[200] > 100
    cluster.pg.resume()
    again = ServerProcess(cluster.root / "a", cluster.url, SECRET, NODE_ENV)  # the same DATA
    cluster.nodes.append(again)
    drained(again)
    every_answer_stored_once(load, cluster.url)


def test_events_wait_for_a_webhook_receiver_that_is_down_and_each_arrives_once(
    cluster: Cluster,
) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    user = Database(cluster.url).write(accounts.create_user, "alice@example.test")
    port = free_port()
    hook = {"url": f"http://127.0.0.1:{port}/hooks/mailbeacon", "events": ["email.opened"]}
    api(a, user.api_key, "/api/v1/webhooks", hook)
    paths = [pixel_of(a, user.api_key) for _ in range(10)]
    for n, path in enumerate(paths):  # a person opens each, through one node or the other
        conn = http.client.HTTPConnection("127.0.0.1", (a, b)[n % 2].port, timeout=10)
        headers = {"User-Agent": THUNDERBIRD, "X-Forwarded-For": f"198.51.100.{n + 1}"}
        conn.request("GET", "/" + path, headers=headers)
        assert conn.getresponse().status == 200
        conn.close()
    with Database(cluster.url) as db:

        def states() -> Counter[str]:
            rows = db.read(lambda conn: conn.execute("SELECT state, attempts FROM deliveries"))
            return Counter("failed-once" if s == "pending" and n else str(s) for s, n in rows)

        deadline = time.monotonic() + 30
        while states()["failed-once"] < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states()["failed-once"] == 10  # the receiver is down: each tried and failed
        with Receiver(port=port) as receiver:
            deadline = time.monotonic() + 60
            while states()["delivered"] < 10 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert states() == {"delivered": 10}
        ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert len(ids) == 10
        assert set(ids.values()) == {1}  # two nodes, and each event arrived once
    attempts: Counter[str] = Counter()
    for node in (a, b):
        with urllib.request.urlopen(f"{node.url}/metrics", timeout=10) as response:
            for family in text_string_to_metric_families(response.read().decode()):
                for sample in family.samples:
                    if sample.name == "mailbeacon_webhook_attempts_total":
                        attempts[sample.labels["outcome"]] += int(sample.value)
    assert attempts == {"failed": 10, "delivered": 10}


def test_sigterm_ends_within_ten_seconds_with_a_webhook_attempt_hanging(cluster: Cluster) -> None:
    a = cluster.node("a")
    user = Database(cluster.url).write(accounts.create_user, "alice@example.test")
    with Receiver() as receiver:
        receiver.replies.append(Reply(hang=60))
        hook = {"url": receiver.url, "events": ["email.opened"]}
        api(a, user.api_key, "/api/v1/webhooks", hook)
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        headers = {"User-Agent": THUNDERBIRD, "X-Forwarded-For": "198.51.100.1"}
        conn.request("GET", "/" + pixel_of(a, user.api_key), headers=headers)
        assert conn.getresponse().status == 200
        conn.close()
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.requests  # the attempt is in flight, and hangs
        started = time.monotonic()
        a.kill(signal.SIGTERM)
        assert time.monotonic() - started < 10
        assert a.process.returncode == 0
    with Database(cluster.url) as db:
        state = db.read(lambda conn: conn.one("SELECT state FROM deliveries"))
    assert state == ("pending",)  # made again after its lease, by whichever node is up
