"""``mailbeacon serve`` from nothing, as the README's quick start uses it."""

import json
import os
import re
import signal
import socket
import sqlite3
import stat
import time
import urllib.request
from pathlib import Path

import httpx
from typer.testing import CliRunner

from mailbeacon.cli import app
from tests.support.server import ServerProcess, free_port


def call(url: str, key: str | None = None, body: dict[str, object] | None = None) -> bytes:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}"} if key else {},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def test_the_first_start_creates_the_secret_and_an_admin_and_records_a_hit(
    tmp_path: Path,
) -> None:
    """The README's quick start: the printed key sends mail, the printed password signs in."""
    data = tmp_path / "data"
    server = ServerProcess(data, str(data / "mailbeacon.db"), secret=None)
    try:
        output = server.log.read_text()
        key = re.search(r"mb_[A-Za-z0-9_-]{40,}", output)
        assert key, output
        assert server.url in output
        assert stat.S_IMODE((data / "secret").stat().st_mode) == 0o600
        password = re.search(r"password: (\S+)", output)
        assert password, output
        assert f"Sign in at {server.url}/ " in output
        signed_in = httpx.post(
            server.url + "/login",
            data={"email": "admin@localhost", "password": password.group(1)},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["set-cookie"].startswith("mb_session=")
        sent = json.loads(
            call(
                server.url + "/api/v1/messages",
                key.group(0),
                {
                    "from": "me@example.com",
                    "to": ["r@example.com"],
                    "subject": "Hi",
                    "html": '<p><a href="https://example.com/sale">sale</a></p>',
                },
            )
        )["messages"][0]
        assert len(call(sent["pixel_url"])) == 43
        found = json.loads(call(f"{server.url}/api/v1/messages/{sent['id']}", key.group(0)))
        # Fetched from the address it was submitted from: the sender's own view, recorded and
        # not counted.
        assert found["counts"]["all_opens"] == 1
        assert found["hits"][0]["verdict"] == "self"
    finally:
        server.kill(signal.SIGTERM)


def test_a_rotated_secret_keeps_old_tokens_working(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, str(data / "mailbeacon.db"), secret=None)
    try:
        key = re.search(r"mb_[A-Za-z0-9_-]{40,}", server.log.read_text())
        assert key
        body = {"from": "me@example.com", "to": ["r@example.com"], "subject": "s", "html": "x"}
        old = json.loads(call(server.url + "/api/v1/messages", key.group(0), body))["messages"][0]
    finally:
        server.kill(signal.SIGTERM)
    env = {"MAILBEACON_DATA": str(data)}
    assert (
        CliRunner().invoke(app, ["secret", "rotate", "--data", str(data)], env=env).exit_code == 0
    )
    assert len((data / "secret").read_text().split()) == 2
    server = ServerProcess(data, str(data / "mailbeacon.db"), secret=None)
    try:
        call(old["pixel_url"].replace(old["pixel_url"].split("/o/")[0], server.url))
        found = json.loads(call(f"{server.url}/api/v1/messages/{old['id']}", key.group(0)))
        assert found["counts"]["all_opens"] == 1
    finally:
        server.kill(signal.SIGTERM)


def test_a_taken_address_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flags in (
            ["--listen", f"127.0.0.1:{port}"],
            ["--listen", f"127.0.0.1:{free_port()}", "--smtp-listen", f"127.0.0.1:{port}"],
        ):
            result = CliRunner().invoke(app, ["serve", "--data", str(tmp_path / "data"), *flags])
            assert result.exit_code == 1
            assert f"127.0.0.1:{port}" in result.output
            assert "in use" in result.output


def test_json_logs_are_an_object_a_line(tmp_path: Path) -> None:
    """``--log-format json``: what serve logs, granian's records and its own, one JSON object a
    line on standard error (a hit it cannot store, here)."""
    server = ServerProcess(
        tmp_path / "serve", str(tmp_path / "mb.db"), None, {"MAILBEACON_LOG_FORMAT": "json"}
    )
    try:
        key = re.search(r"API key:\s+(\S+)", server.log.read_text())
        assert key is not None
        body = {"from": "a@example.test", "to": ["r@example.test"], "subject": "s", "html": "<p>"}
        sent = json.loads(call(f"{server.url}/api/v1/messages", key[1], body))
        with sqlite3.connect(tmp_path / "mb.db") as db:
            db.execute("ALTER TABLE hits RENAME TO hits_away")  # storing a hit fails: logged
        call(sent["messages"][0]["pixel_url"])
    finally:
        server.kill(signal.SIGTERM)
    records = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    loggers = {r["logger"] for r in records}
    assert "_granian" in loggers
    stored = [r for r in records if r["logger"] == "mailbeacon.store.writer"]
    assert stored[0]["level"] == "WARNING"
    assert stored[0]["message"].startswith("could not store 1 hits")
    assert stored[0]["time"].endswith("+00:00")


def test_sigusr1_writes_every_threads_and_tasks_stack_to_the_log_and_serving_goes_on(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "serve", str(tmp_path / "mb.db"), None)
    try:
        os.kill(server.process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "Stack for <Task" not in server.log.read_text():  # the tasks', after the threads'
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.05)
        assert "Current thread" in server.log.read_text()  # the main thread's, last
        assert call(f"{server.url}/healthz")  # still serving
    finally:
        server.kill(signal.SIGTERM)
    assert server.process.returncode == 0
