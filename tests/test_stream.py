"""The live stream and ``mailbeacon watch`` against a real ``mailbeacon serve``; and a hit
answered just before ``kill -9`` still notifies after the restart."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailbeacon.store.db import Database
from tests.conftest import SECRET, Persona
from tests.support.server import ServerProcess, free_port

THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
)
LONG_AGO = "2026-11-30T09:00:00Z"
HOSTILE = "[bold red]Quarterly[/] <script>alert(1)</script> :x:"
READER = "203.0.113.7"  # the recipient, through the loopback "proxy"; the API calls are the sender


def serve_env(env: dict[str, str], **more: str) -> dict[str, str]:
    """The test's settings for ``serve`` (the data and database are the server's own)."""
    kept = {k: v for k, v in env.items() if k not in ("MAILBEACON_DATA", "MAILBEACON_DB")}
    return {**kept, "MAILBEACON_TRUSTED_PROXIES": "127.0.0.1/32", **more}


@pytest.fixture
def server(
    tmp_path: Path, db: Database, db_url: str, env: dict[str, str]
) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path / "serve", db_url, SECRET, env=serve_env(env))
    try:
        yield running
    finally:
        running.kill()


def register(server: ServerProcess, persona: Persona, **fields: Any) -> dict[str, Any]:
    body = {
        "from": persona.email,
        "to": ["reader@example.test"],
        "subject": HOSTILE,
        "html": "<p>hello</p>",
        **fields,
    }
    answer = httpx.post(f"{server.url}/api/v1/messages", json=body, headers=persona.auth)
    assert answer.status_code == 201, answer.text
    return answer.json()["messages"][0]  # type: ignore[no-any-return]


def open_pixel(server: ServerProcess, message: dict[str, Any]) -> None:
    path = message["pixel_url"].split("/o/", 1)[1]
    headers = {"User-Agent": THUNDERBIRD, "X-Forwarded-For": READER}
    answer = httpx.get(f"{server.url}/o/{path}", headers=headers)
    assert answer.status_code == 200


class Listener:
    """Reads a stream in a thread: its events arrive on ``events`` as (id, type, data)."""

    def __init__(self, server: ServerProcess, persona: Persona, **headers: str) -> None:
        self.events: queue.Queue[tuple[int, str, dict[str, Any]]] = queue.Queue()
        self.ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=60))
        request = self._client.build_request(
            "GET", f"{server.url}/api/v1/stream", headers={**persona.auth, **headers}
        )
        self._response = self._client.send(request, stream=True)
        assert self._response.status_code == 200
        assert self._response.headers["content-type"].startswith("text/event-stream")
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(10)

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self._response.iter_lines():
                if line.startswith("retry:"):
                    self.ready.set()
                elif line == "" and "data" in fields:
                    data = json.loads(fields["data"])
                    self.events.put((int(fields["id"]), fields["event"], data))
                    fields = {}
                elif ": " in line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        except httpx.HTTPError:
            pass  # closed by the test

    def next(self) -> tuple[int, str, dict[str, Any]]:
        return self.events.get(timeout=20)

    def close(self) -> None:
        self._response.close()
        self._client.close()


def test_a_stream_shows_an_open_as_it_happens_and_resumes_after_the_last_event(
    server: ServerProcess, alice: Persona
) -> None:
    listener = Listener(server, alice)
    try:
        message = register(server, alice, sent_at=LONG_AGO)
        open_pixel(server, message)
        event_id, kind, payload = listener.next()
        assert kind == "email.opened"
        assert payload["type"] == "email.opened"
        assert payload["timestamp"].endswith("Z")
        assert payload["data"]["message_id"] == message["id"]
        assert payload["data"]["subject"] == HOSTILE
        assert payload["data"]["client"]["name"] == "Thunderbird"
    finally:
        listener.close()
    open_pixel(server, message)  # while nobody listens
    resumed = Listener(server, alice, **{"Last-Event-ID": str(event_id)})
    try:
        later_id, kind, payload = resumed.next()
        assert later_id > event_id
        assert (kind, payload["data"]["first"]) == ("email.opened", False)
    finally:
        resumed.close()


def test_a_stream_is_each_users_own(server: ServerProcess, alice: Persona, bob: Persona) -> None:
    listener = Listener(server, bob, **{"Last-Event-ID": "0"})
    try:
        open_pixel(server, register(server, alice, sent_at=LONG_AGO))
        bobs = register(server, bob, sent_at=LONG_AGO)
        open_pixel(server, bobs)
        _, _, payload = listener.next()
        assert payload["data"]["message_id"] == bobs["id"]
    finally:
        listener.close()
    unauthenticated = httpx.get(f"{server.url}/api/v1/stream")
    assert unauthenticated.status_code == 401
    bad = httpx.get(f"{server.url}/api/v1/stream?types=email.read", headers=alice.auth)
    assert bad.status_code == 400
    assert "types: expected some of email.opened" in bad.json()["error"]


def test_watch_prints_events_as_json_lines_and_as_a_table(
    server: ServerProcess, alice: Persona, env: dict[str, str]
) -> None:
    message = register(server, alice, sent_at=LONG_AGO)
    open_pixel(server, message)
    watch = [sys.executable, "-m", "mailbeacon", "watch", "--user", alice.email]
    as_json = subprocess.run(
        [*watch, "--after", "0", "--count", "1", "--json"],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    line = json.loads(as_json.stdout)
    assert (line["type"], line["data"]["message_id"]) == ("email.opened", message["id"])
    table = subprocess.run(
        [*watch, "--after", "0", "--count", "1"],
        env={**env, "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "reader@example.test" in table.stdout
    assert HOSTILE in table.stdout  # printed as it is: no markup, no emoji read into it
    assert "Thunderbird (desktop, Windows 10)" in table.stdout


def test_an_open_answered_before_kill_9_notifies_after_the_restart(
    tmp_path: Path, db: Database, db_url: str, alice: Persona, env: dict[str, str]
) -> None:
    settings = serve_env(env, MAILBEACON_SETTLE_SECONDS="2")
    first = ServerProcess(tmp_path / "serve", db_url, SECRET, env=settings)
    try:
        message = register(first, alice)  # sent now: the open is held for 2 s
        open_pixel(first, message)
    finally:
        first.kill()  # SIGKILL, before the hold is over
    assert db.read(lambda c: c.execute("SELECT COUNT(*) FROM events"))[0][0] == 0
    second = ServerProcess(tmp_path / "serve", db_url, SECRET, env=settings)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = db.read(lambda c: c.execute("SELECT type, message_id FROM events"))
            if rows:
                break
            time.sleep(0.1)
        assert [tuple(r) for r in rows] == [("email.opened", message["id"])]
    finally:
        second.kill()


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
APPLE_RELAY = "104.28.28.1"  # inside the first range of ../shared/data's IPv4 list
GATEWAY = "203.0.113.200"
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_receiver(secret: str, port: int) -> str:
    """The README's receiving example, with this test's secret and port."""
    text = README.read_text()
    block = text.split("**Receiving**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert '"whsec_…"' in block
    assert "9000" in block
    return block.replace('"whsec_…"', repr(secret)).replace("9000", str(port))


def test_the_readme_receiver_gets_a_verified_open_and_nothing_from_machines(
    tmp_path: Path, db: Database, db_url: str, alice: Persona, env: dict[str, str]
) -> None:
    settings = serve_env(env, MAILBEACON_SETTLE_SECONDS="3", MAILBEACON_ALLOW_PRIVATE_WEBHOOKS="1")
    server = ServerProcess(tmp_path / "serve", db_url, SECRET, env=settings)
    receiver = None
    try:
        port = free_port()
        hook = {"url": f"http://127.0.0.1:{port}/", "events": ["email.opened", "email.clicked"]}
        made = httpx.post(f"{server.url}/api/v1/webhooks", json=hook, headers=alice.auth)
        assert made.status_code == 201, made.text
        script = tmp_path / "receiver.py"
        script.write_text(readme_receiver(made.json()["secret"], port))
        receiver = subprocess.Popen(
            [sys.executable, "-u", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        links = "".join(f'<a href="https://shop.example.test/{n}">{n}</a> ' for n in range(3))
        scanned = register(server, alice, html=links, subject="Scanned")  # sent now
        fetch = {"User-Agent": CHROME, "X-Forwarded-For": GATEWAY}
        httpx.get(scanned["pixel_url"].replace("https://t.example.test", server.url), headers=fetch)
        for link in scanned["links"]:
            url = link["tracked_url"].replace("https://t.example.test", server.url)
            assert httpx.get(url, headers=fetch).status_code in (302, 303, 307)
        prefetched = register(server, alice, subject="Prefetched", sent_at=LONG_AGO)
        apple = {"User-Agent": "Mozilla/5.0", "X-Forwarded-For": APPLE_RELAY}
        httpx.get(
            prefetched["pixel_url"].replace("https://t.example.test", server.url), headers=apple
        )
        read = register(server, alice, subject="Read", sent_at=LONG_AGO)
        open_pixel(server, read)
        assert receiver.stdout is not None
        assert receiver.stdout.readline() == "email.opened reader@example.test Read\n"
        time.sleep(6)  # the scanner's hold (3 s) is over, and its verdict settled
        delivered = db.read(
            lambda c: c.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
        )
        assert delivered[0][0] == 1
        verdicts = db.read(
            lambda c: c.execute("SELECT verdict FROM hits WHERE message_id = ?", (scanned["id"],))
        )
        assert {v for (v,) in verdicts} == {"machine"}
    finally:
        if receiver is not None:
            receiver.kill()
            _, errors = receiver.communicate(timeout=10)
            assert "Traceback" not in errors
        server.kill()
