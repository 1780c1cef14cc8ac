"""The servers the bench loads (nginx's pixel, `mailbeacon serve` on one node or several) and
what it asks of them: a user, registered messages, the hits they have recorded."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any

import psycopg
from processes import BenchError, Processes, wait_until_up
from tests.support.server import free_port

MAILBEACON = (sys.executable, "-m", "mailbeacon")
NGINX_TEMPLATE = Path(__file__).with_name("nginx.conf.template")
HTML = '<html><body><p>Hello</p><a href="https://example.test/">x</a></body></html>'
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
)


@dataclass
class Server:
    """A server while it runs; once stopped, how it exited (None: it had to be killed)."""

    base: str
    log: Path
    group: int = 0  # its process group: the server and any workers it starts
    exit_code: int | None = None


@dataclass(frozen=True)
class Subject:
    """What the load generator aims at (one URL a node), and how to count what the servers have
    recorded so far."""

    servers: Sequence[Server]
    urls: Sequence[str]  # the same resource on each server
    count: Callable[[], int]
    headers: Sequence[str] = ()  # sent with every request


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def count_hits(db: str) -> int:
    """Rows in ``hits``; SQLite's WAL lets this read while the server writes."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT COUNT(*) FROM hits").fetchone()
    else:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            row = conn.execute("SELECT COUNT(*) FROM hits").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def nginx(procs: Processes, workdir: Path) -> Iterator[Subject]:
    """nginx serving ``empty_gif`` at /o/x.gif, one worker, access log in ``workdir``."""
    workdir.mkdir(parents=True)
    port = free_port()
    config = workdir / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    template = Template(NGINX_TEMPLATE.read_text())
    config.write_text(template.substitute(dir=workdir, port=port, user=user))
    server = Server(f"http://127.0.0.1:{port}", workdir / "error.log")
    args = ["nginx", "-p", str(workdir), "-c", str(config), "-e", str(server.log)]
    child = procs.start(args, workdir / "stderr.log")
    server.group = child.pid
    try:
        wait_until_up("nginx", server.base + "/o/x.gif", child, workdir / "stderr.log")
        yield Subject(
            [server], [server.base + "/o/x.gif"], lambda: _count_lines(workdir / "access.log")
        )
    finally:
        server.exit_code = procs.stop(child, signal.SIGQUIT)  # SIGQUIT: graceful shutdown


def flags(data: Path, db: str | None) -> list[str]:
    return ["--data", str(data), *(["--db", db] if db else [])]


BENCH_PASSWORD = "bench-password-for-the-dashboard"  # noqa: S105 (a throwaway user's)


def add_user(procs: Processes, data: Path, db: str | None) -> str:
    """A user's API key, made before the server starts (same --data and --db); the user signs
    in to the dashboard with ``BENCH_PASSWORD``."""
    data.mkdir(parents=True, exist_ok=True)
    args = [*MAILBEACON, "users", "add", "bench@example.test", "--json", *flags(data, db)]
    args += ["--password", BENCH_PASSWORD]
    done = procs.run(args, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"`mailbeacon users add` failed: {done.stderr}{done.stdout}")
    return str(json.loads(done.stdout)["api_key"])


@contextlib.contextmanager
def mailbeacon(
    procs: Processes, data: Path, db: str | None, extra: Sequence[str] = ()
) -> Iterator[Server]:
    """``mailbeacon serve`` on a free loopback port, stopped with SIGINT."""
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", data / "serve.log")
    args = [*MAILBEACON, "serve", "--listen", f"127.0.0.1:{port}", *flags(data, db), *extra]
    child = procs.start(args, server.log)
    server.group = child.pid
    try:
        wait_until_up("mailbeacon serve", server.base + "/healthz", child, server.log)
        yield server
    finally:
        server.exit_code = procs.stop(child, signal.SIGINT)


def register(
    server: Server, key: str, recipients: Sequence[str], sent_at: str | None = None
) -> list[dict[str, Any]]:
    """One message per recipient, through the API."""
    body = {"from": "bench@example.test", "to": list(recipients), "subject": "bench", "html": HTML}
    if sent_at is not None:
        body["sent_at"] = sent_at
    request = urllib.request.Request(
        server.base + "/api/v1/messages",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            messages: list[dict[str, Any]] = json.load(response)["messages"]
    except urllib.error.HTTPError as exc:
        raise BenchError(f"POST /api/v1/messages: {exc.code} {exc.read()!r}") from exc
    return messages


@contextlib.contextmanager
def pixel(
    procs: Processes, data: Path, db: str | None, *, people: bool = False, nodes: int = 1
) -> Iterator[Subject]:
    """mailbeacon serving the pixel of one registered message, on ``nodes`` servers that share
    the secret and the database (the first one's SQLite file unless ``db``). The requests carry no
    User-Agent and come from where the message was registered: machine or self opens, which
    notify nobody. With ``people``, each is Thunderbird behind a trusted proxy a day after
    sending: a person's open, published as an event (the hit outbox, then the notifier)."""
    key = add_user(procs, data, db)
    extra = ["--trusted-proxies", "127.0.0.1/32"] if people else []
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(mailbeacon(procs, data, db, extra))]
        for n in range(2, nodes + 1):
            # A node of its own data directory (its spool), the first one's secret and database.
            own = data / f"node{n}"
            own.mkdir()
            shutil.copy2(data / "secret", own / "secret")
            servers.append(
                stack.enter_context(mailbeacon(procs, own, db or sqlite_db(data), extra))
            )
        sent_at = (datetime.now(UTC) - timedelta(days=1)).isoformat() if people else None
        message = register(servers[0], key, ["reader@example.test"], sent_at)[0]
        path = message["pixel_url"].removeprefix(servers[0].base)
        headers = [f"User-Agent: {THUNDERBIRD}", "X-Forwarded-For: 203.0.113.7"] if people else []
        yield Subject(
            servers,
            [server.base + path for server in servers],
            lambda: count_hits(db or sqlite_db(data)),
            headers,
        )


def sqlite_db(data: Path) -> str:
    return str(data / "mailbeacon.db")


def api_post(server: Server, key: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        server.base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None
