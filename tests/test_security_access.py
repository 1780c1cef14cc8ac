"""An outsider on every API route, requests without a key, and brute force: guessing API keys
and passwords. Routes are read from the application itself (tests/support/routes.py), so a
route added later is attacked too. (Hostile text through every route is in test_security.py.)

Personas: alice owns the data, bob is an outsider, mallory has no account at all.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pytest
from starlette.testclient import TestClient

from mailbeacon.store.db import Database
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send
from tests.support.routes import api_routes, fill
from tests.test_dashboard import sign_in

ORIGIN = "https://t.example.test"
LONG_AGO = "2026-11-30T09:00:00Z"  # hits of a message sent a day ago notify at once


# --- an outsider on every API route ---------------------------------------------------------------


@dataclass(frozen=True)
class Owned:
    """Alice's things, each something an outsider must neither see nor change."""

    message_id: str
    webhook_id: str
    campaign: str
    address: str
    subject: str

    def values(self, name: str) -> str:
        """The value of alice's to put for a path parameter."""
        by_name = {"message_id": self.message_id, "webhook_id": self.webhook_id,
                   "name": self.campaign, "address": self.address}  # fmt: skip
        return by_name[name]


@pytest.fixture
def owned(client: TestClient, services: Services, alice: Persona) -> Owned:
    private_subject = "Alice's board minutes"
    message = send(client, alice, subject=private_subject, campaign="alices-launch",
                   to=["alices-reader@example.test"], sent_at=LONG_AGO)  # fmt: skip
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": "Thunderbird/128.0"})
    unsubscribe = client.post(f"/u/{services.signer.sign('u', message['id'])}")
    assert unsubscribe.status_code == 200
    hook = {"url": "https://hooks.example.test/alice", "events": ["email.opened"]}
    webhook = client.post("/api/v1/webhooks", json=hook, headers=alice.auth).json()
    return Owned(message["id"], webhook["id"], "alices-launch", "alices-reader@example.test",
                 private_subject)  # fmt: skip


def test_an_outsider_gets_nothing_of_alices_on_any_api_route(
    client: TestClient, alice: Persona, bob: Persona, owned: Owned
) -> None:
    alices = (f"/api/v1/messages/{owned.message_id}", f"/api/v1/webhooks/{owned.webhook_id}",
              "/api/v1/suppressions", f"/api/v1/recipients/{owned.address}/stats")  # fmt: skip
    before = {path: client.get(path, headers=alice.auth).json() for path in alices}
    app: App = client.app.app  # type: ignore[attr-defined]  # Peers(App)
    tried = 0
    for method, template in api_routes(app):
        if template == "/api/v1/stream":
            continue  # it streams for ever here; test_stream.py shows it is each user's own
        names = re.findall(r"\{([^}:]+)", template)
        path = template
        for name in names:
            path = path.replace(f"{{{name}}}", quote(owned.values(name), safe=""))
        body = {"enabled": False, "url": "https://bob.example.test/", "events": ["email.hit"]}
        answer = client.request(method, path, headers=bob.auth, json=body)
        where = f"{method} {path}"
        assert answer.status_code < 500, where
        if {"message_id", "webhook_id"} & set(names):  # alice's things, by their ids
            assert answer.status_code in (403, 404), where
        # A campaign name or an address is not alice's: bob may have his own of that name, and
        # is answered about his own (none), so only what the answer holds matters.
        for secret in (owned.message_id, owned.webhook_id, owned.subject, owned.address):
            if secret not in unquote(path):  # bob's own words may be said back to him
                assert secret not in answer.text, where
        tried += 1
    assert tried >= 15
    for path, seen in before.items():  # and nothing of alice's changed
        assert client.get(path, headers=alice.auth).json() == seen, path


def test_every_api_route_but_the_openapi_document_needs_a_key(client: TestClient) -> None:
    app: App = client.app.app  # type: ignore[attr-defined]
    peers = (f"2001:db8:{n:x}::1" for n in itertools.count())  # each its own, not held back
    for method, template in api_routes(app):
        path = fill(template, "x")
        for headers in ({}, {"Authorization": "Bearer mb_" + "A" * 43}, {"Authorization": "mb_x"}):
            answer = client.request(
                method, path, headers={**headers, "X-Test-Peer": next(peers)}, json={}
            )
            assert answer.status_code == 401, (method, path, headers)


# --- brute force ----------------------------------------------------------------------------------


def guess_keys(client: TestClient, peer: str, times: int) -> list[int]:
    """Unknown API keys sent from ``peer``: the status of each answer."""
    return [
        client.get(
            "/api/v1/events", headers={"X-Test-Peer": peer, "Authorization": f"Bearer mb_{n:043d}"}
        ).status_code
        for n in range(times)
    ]  # fmt: skip


def test_a_burst_of_wrong_api_keys_from_one_address_is_held_back(
    client: TestClient, alice: Persona
) -> None:
    mallory = "198.51.100.66"
    # The 20th unknown key within 15 minutes is refused, and all after it (web/api.py).
    assert guess_keys(client, mallory, 25) == [401] * 19 + [429] * 6
    held = client.get("/api/v1/events", headers={**alice.auth, "X-Test-Peer": mallory})
    assert held.status_code == 429  # a right key too: it may be the guess that hit
    assert 0 < int(held.headers["retry-after"]) <= 900
    # The owner, from elsewhere, is not held back by it.
    assert client.get("/api/v1/events", headers=alice.auth).status_code == 200


def test_wrong_api_keys_from_one_ipv6_network_count_together(client: TestClient) -> None:
    """A /64 is one subscriber's: each guess from another of its addresses is still theirs."""
    statuses = [guess_keys(client, f"2001:db8:1:2::{n:x}", 1)[0] for n in range(21)]
    assert statuses == [401] * 19 + [429] * 2
    assert guess_keys(client, "2001:db8:1:3::1", 1) == [401]


def test_sign_in_throttling_counts_an_email_however_it_is_written(
    client: TestClient, db: Database, alice: Persona
) -> None:
    sign_in(client, db, alice)  # gives alice a password
    client.cookies.clear()
    for n, written in enumerate(["ALICE@example.test", " alice@example.test", "Alice@Example.Test",
                                 "alice@EXAMPLE.TEST\t", "alice@example.test"]):  # fmt: skip
        wrong = client.post("/login", data={"email": written, "password": "wrong guess"},
                            headers={"Origin": ORIGIN, "X-Test-Peer": f"198.51.100.{n}"},
                            follow_redirects=False)  # fmt: skip
        assert wrong.status_code == 401
    right = client.post("/login", data={"email": alice.email, "password": "correct horse battery"},
                        headers={"Origin": ORIGIN, "X-Test-Peer": "192.0.2.99"},
                        follow_redirects=False)  # fmt: skip
    assert right.status_code == 429
