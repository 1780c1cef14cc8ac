"""A database that stops answering does not stop the pixel from answering."""

import os
import signal
import time
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from mailbeacon.store import writer
from mailbeacon.web.tracking import GIF
from tests.conftest import Persona, path_of, send


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "PG_BATCH_TIMEOUT", 1.0)


def _backends(db_url: str) -> list[int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(pid) for (pid,) in rows]


@pytest.fixture
def frozen(db_url: str) -> Iterator[list[int]]:
    """Backends of the test database to freeze (SIGSTOP) and always thaw afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.usefixtures("short_timeout")
def test_the_pixel_answers_when_postgresql_stops_answering(
    client: TestClient, alice: Persona, db_url: str, frozen: list[int]
) -> None:
    if not db_url.startswith("postgresql://"):
        pytest.skip("SQLite has no server to freeze; its 5 s busy timeout bounds a lock wait")
    message = send(client, alice)
    assert client.get(path_of(message["pixel_url"])).status_code == 200  # the writer connects
    frozen.extend(_backends(db_url))
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    response = client.get(path_of(message["pixel_url"]))
    assert response.status_code == 200
    assert response.content == GIF
    assert time.monotonic() - started < 5
