"""An answered hit survives ``kill -9`` of the server under load."""

import http.client
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from mailbeacon.store.db import Database
from tests.conftest import SECRET, Persona
from tests.support.server import ServerProcess

CLIENTS = 16


def register(server: ServerProcess, persona: Persona) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = (
        '{"from": "alice@example.test", "to": ["r@example.test"], "subject": "s", '
        '"html": "<p>hello</p>"}'
    )
    conn.request(
        "POST", "/api/v1/messages", body, {**persona.auth, "Content-Type": "application/json"}
    )
    response = conn.getresponse()
    assert response.status == 201
    pixel: str = json.loads(response.read())["messages"][0]["pixel_url"]
    conn.close()
    return pixel.removeprefix(server.url)


def hammer(port: int, path: str, answered: list[int], stop: threading.Event) -> None:
    """Fetch the pixel on one keep-alive connection; count answers fully received."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    count = 0
    try:
        while not stop.is_set():
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and len(body) == 43:
                count += 1
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()
        answered.append(count)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_no_answered_hit_is_lost_when_the_server_is_stopped_under_load(
    tmp_path: Path, db: Database, db_url: str, alice: Persona, sig: signal.Signals
) -> None:
    server = ServerProcess(tmp_path / "serve", db_url, SECRET)
    try:
        path = register(server, alice)
        answered: list[int] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=hammer, args=(server.port, path, answered, stop))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        started = time.monotonic()
        server.kill(sig)
        stopped_in = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        if server.process.poll() is None:
            server.kill()
    total = sum(answered)
    stored = db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits"))
    assert stored is not None
    assert total > 100, "the load did not get going"
    assert stored[0] >= total
    if sig == signal.SIGTERM:
        assert server.process.returncode == 0
        assert stopped_in < 10
