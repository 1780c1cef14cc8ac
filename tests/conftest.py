"""Fixtures: every store test runs on SQLite and on a real PostgreSQL server, with personas.

Personas (Healthchecks style): ``alice`` owns the data under test, ``bob`` is an outsider.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mailbeacon import accounts
from mailbeacon.settings import Settings
from mailbeacon.store.db import Database
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.support.peers import Peers
from tests.support.postgres import TemporaryPostgres

SECRET = "test-secret-" + "x" * 40
# Apple's Private Relay egress ranges, for tests only (never committed: the product downloads
# Apple's list itself). ../shared/data/README.md says where they come from.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[TemporaryPostgres]:
    server = TemporaryPostgres().start()
    template = server.create_database("mailbeacon_template")
    Database(template).migrate()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def apple_egress(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both of the shared egress lists in one file, as ``--apple-egress`` takes it."""
    path = tmp_path_factory.mktemp("apple") / "egress.txt"
    path.write_text(
        "".join(
            (SHARED_DATA / f"apple-private-relay-egress-{family}.txt").read_text()
            for family in ("ipv4", "ipv6")
        )
    )
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "mailbeacon.db")
    server: TemporaryPostgres = request.getfixturevalue("postgres")
    return server.create_database(f"test_{next(_databases)}", template="mailbeacon_template")


@pytest.fixture
def settings(db_url: str, tmp_path: Path, apple_egress: Path) -> Settings:
    return Settings.load(
        {
            "data": str(tmp_path / "data"),
            "db": db_url,
            "listen": "127.0.0.1:8025",
            "public_url": "https://t.example.test",
            "secret": SECRET,
            "trusted_proxies": "",
            "previous_secrets": "",
            "smtp_listen": "",
            "apple_egress": str(apple_egress),
            "apple_egress_refresh": "0",
        },
        environ={},
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.db)
    database.migrate()
    yield database
    database.close()


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The environment that points a CLI command at the test's store."""
    return {
        "MAILBEACON_DATA": str(settings.data),
        "MAILBEACON_DB": settings.db,
        "MAILBEACON_SECRET": SECRET,
        "MAILBEACON_PUBLIC_URL": settings.public_url,
        "MAILBEACON_APPLE_EGRESS": str(settings.apple_egress),
    }


@dataclass
class Persona:
    id: int
    email: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _persona(db: Database, email: str) -> Persona:
    user = db.write(accounts.create_user, email)
    return Persona(user.id, user.email, user.api_key)


@pytest.fixture
def alice(db: Database) -> Persona:
    return _persona(db, "alice@example.test")


@pytest.fixture
def bob(db: Database) -> Persona:
    return _persona(db, "bob@example.test")


@pytest.fixture
def services(settings: Settings, db: Database) -> Services:
    return Services.open(settings)


PEER = ("203.0.113.7", 50000)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = Peers(App(services))
    with TestClient(app, base_url="https://t.example.test", client=PEER) as test_client:
        yield test_client


HTML = (
    '<html><body><p>Hi <a href="https://shop.example.test/sale?a=1&amp;b=2">the sale</a>, '
    '<a href="mailto:help@example.test">help</a> '
    '<a href="https://example.test/blog">blog</a></p></body></html>'
)


def send(
    client: TestClient, persona: Persona, html: str = HTML, **fields: object
) -> dict[str, Any]:
    """Register one tracked message for ``persona`` through the API; return its copy."""
    body = {"from": persona.email, "to": ["reader@example.test"], "subject": "Hello", "html": html}
    response = client.post("/api/v1/messages", json={**body, **fields}, headers=persona.auth)
    assert response.status_code == 201, response.text
    return response.json()["messages"][0]


def path_of(url: str) -> str:
    return url.removeprefix("https://t.example.test")
