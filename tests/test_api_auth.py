"""Tenant isolation: an outsider (bob) sees nothing of alice's, on every route."""

import re

import pytest
from starlette.testclient import TestClient

from mailbeacon.relay.queue import Outgoing, enqueue
from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database
from tests.conftest import Persona, path_of, send


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/messages/AAAAAAAAAAAAAAAA"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/bounces"),
        ("GET", "/api/v1/campaigns/x/stats"),
        ("GET", "/api/v1/recipients/reader@example.test/stats"),
        ("POST", "/api/v1/self-mark"),
        ("GET", "/api/v1/settings"),
        ("PUT", "/api/v1/settings"),
        ("GET", "/api/v1/suppressions"),
        ("DELETE", "/api/v1/suppressions/reader@example.test"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer ", "Bearer mb_not-a-key", "Basic YWxpY2U6cHc="]
)
def test_every_api_route_needs_a_valid_key(
    client: TestClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert "API key" in response.json()["error"]


def test_an_outsider_cannot_see_a_message(client: TestClient, alice: Persona, bob: Persona) -> None:
    message = send(client, alice)
    assert client.get(f"/api/v1/messages/{message['id']}", headers=bob.auth).status_code == 404
    assert client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).status_code == 200


def test_an_outsider_sees_none_of_the_events(
    client: TestClient, alice: Persona, bob: Persona
) -> None:
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]))
    assert client.get("/api/v1/events", headers=bob.auth).json()["events"] == []
    assert len(client.get("/api/v1/events", headers=alice.auth).json()["events"]) == 1


def test_an_outsider_sees_none_of_the_bounces(
    client: TestClient, db: Database, alice: Persona, bob: Persona
) -> None:
    def bounce(conn: Conn) -> None:
        copy = Outgoing(alice.id, None, alice.email, "gone@x.test", b"")
        [queue_id] = enqueue(conn, [copy], now=1)
        queries.mark_bounced(conn, queue_id, error="550 no such user", at=2, suppress=True)

    db.write(bounce)
    assert client.get("/api/v1/bounces", headers=bob.auth).json()["bounces"] == []
    assert len(client.get("/api/v1/bounces", headers=alice.auth).json()["bounces"]) == 1


def test_an_outsider_cannot_read_campaign_stats(
    client: TestClient, alice: Persona, bob: Persona
) -> None:
    send(client, alice, campaign="launch")
    assert client.get("/api/v1/campaigns/launch/stats", headers=bob.auth).status_code == 404
    assert client.get("/api/v1/campaigns/launch/stats", headers=alice.auth).status_code == 200


def test_the_openapi_document_is_public_and_names_every_route(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    routes = client.app.app.starlette.routes  # type: ignore[attr-defined]  # Peers(App)
    served: dict[str, set[str]] = {}
    for route in routes:
        if route.path.startswith("/api/v1/") and route.path != "/api/v1/openapi.json":
            path = re.sub(r":\w+}", "}", route.path)  # {name:path} is {name} to a client
            served.setdefault(path, set()).update(m.lower() for m in route.methods)
    assert set(spec["paths"]) == set(served)
    for path, methods in served.items():
        assert set(spec["paths"][path]) == methods - {"head"}, path


def test_an_outsider_cannot_read_a_recipients_stats(
    client: TestClient, alice: Persona, bob: Persona
) -> None:
    send(client, alice)
    path = "/api/v1/recipients/reader@example.test/stats"
    assert client.get(path, headers=bob.auth).status_code == 404
    assert client.get(path, headers=alice.auth).json()["delivered"] == 1


def test_a_browser_mark_is_the_users_own(client: TestClient, alice: Persona, bob: Persona) -> None:
    """Bob's mark in a browser does not make that browser's views of alice's mail `self`."""
    url = client.post("/api/v1/self-mark", headers=bob.auth).json()["url"]
    client.get(path_of(url))
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": "Thunderbird/115.5.0"})
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found["hits"][0]["verdict"] == "human"


def test_settings_are_each_users_own(client: TestClient, alice: Persona, bob: Persona) -> None:
    defaults = {
        "track_default": False, "alerts": "first", "tracking": "full", "consent_required": False,
        "retention_days": 0,
    }  # fmt: skip
    assert client.get("/api/v1/settings", headers=alice.auth).json() == defaults
    changed = client.put("/api/v1/settings", json={"track_default": True}, headers=alice.auth)
    assert changed.json() == {**defaults, "track_default": True}
    changed = client.put("/api/v1/settings", json={"alerts": "digest"}, headers=alice.auth)
    assert changed.json() == {**defaults, "track_default": True, "alerts": "digest"}
    assert client.get("/api/v1/settings", headers=alice.auth).json() == changed.json()
    assert client.get("/api/v1/settings", headers=bob.auth).json() == defaults


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({}, "track_default"),
        ({"track_default": "yes"}, "track_default"),
        ({"track_default": True, "x": 1}, "track_default"),
        ({"alerts": "sometimes"}, "alerts: expected one of first, every, digest, off"),
    ],
)
def test_a_wrong_setting_is_refused_and_says_what_is_expected(
    client: TestClient, alice: Persona, body: dict[str, object], said: str
) -> None:
    answer = client.put("/api/v1/settings", json=body, headers=alice.auth)
    assert answer.status_code == 422
    assert said in answer.json()["error"]


def test_unknown_api_keys_from_one_address_are_refused_for_a_while(
    client: TestClient, alice: Persona, db: Database
) -> None:
    for n in range(19):
        wrong = {"Authorization": f"Bearer mb_wrong{n}"}
        assert client.get("/api/v1/settings", headers=wrong).status_code == 401
    refused = client.get("/api/v1/settings", headers={"Authorization": "Bearer mb_wrong19"})
    assert refused.status_code == 429
    assert 899 <= int(refused.headers["retry-after"]) <= 900
    # From that address, even a good key waits; from another, it works.
    assert client.get("/api/v1/settings", headers=alice.auth).status_code == 429
    other = {**alice.auth, "X-Test-Peer": "192.0.2.99"}
    assert client.get("/api/v1/settings", headers=other).status_code == 200
    counted = db.read(lambda c: c.one("SELECT COUNT(*) FROM login_failures WHERE key LIKE 'key-%'"))
    assert counted == (20,)  # in the database: every node counts them
