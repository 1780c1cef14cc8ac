"""Webhooks: endpoints subscribed through the API and the CLI, and events delivered to a real
receiver on loopback, signed as Standard Webhooks says (checked with its reference package),
retried on Svix's schedule, never sent to a private address unless allowed."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from email.utils import format_datetime
from pathlib import Path
from typing import Any, get_type_hints

import httpcore
import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.accounts import now_us
from mailbeacon.cli import app as cli
from mailbeacon.notify import events, http, webhooks
from mailbeacon.notify.alerts import Mailer
from mailbeacon.notify.dispatcher import BACKOFF, FAILING_LIMIT, USER_AGENT, Dispatcher
from mailbeacon.notify.events import EVENT_TYPES, HitData
from mailbeacon.relay.deliverer import JITTER
from mailbeacon.reports import iso
from mailbeacon.settings import Settings
from mailbeacon.store import webhooks as store
from mailbeacon.store.db import Database
from mailbeacon.store.writer import Writer
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import PEER, SECRET, Persona
from tests.support.receiver import PATH, Receiver, Reply
from tests.support.rows import row_of
from tests.support.upstream import make_certificate
from tests.test_delivery import Clock

SECOND = 1_000_000
HOUR, DAY = 3600 * SECOND, 86400 * SECOND
MAILER = Mailer(
    "mailbeacon <mailbeacon@t.example.test>", "https://t.example.test", Signer([SECRET])
)
LEASE = 120.0
runner = CliRunner()


def opened_data(message_id: str = "m1") -> HitData:
    return HitData(
        message_id=message_id,
        recipient="reader@example.test",
        subject="Hello",
        campaign=None,
        hit_id=1,
        kind="open",
        url=None,
        time="2026-12-01T09:30:00.000Z",
        seconds_after_sending=120.5,
        verdict="human",
        agent="thunderbird",
        confidence=0.9,
        client={"name": "Thunderbird", "type": "desktop", "os": "Windows"},
        first=True,
    )


def subscribe(
    db: Database, persona: Persona, url: str, kinds: tuple[str, ...] = ("email.opened",)
) -> tuple[str, str]:
    """An endpoint of ``persona``'s: its id and its secret."""
    endpoint, secret = db.write(webhooks.create, persona.id, url, list(kinds), now=now_us())
    return endpoint.id, secret


def publish(db: Database, persona: Persona, *, at: int | None = None) -> str:
    """An ``email.opened`` of ``persona``'s, published; its webhook-id."""

    def run(conn: Any) -> str:
        event_id = events.publish(conn, persona.id, "email.opened", "m1", opened_data(),
                                  now=now_us() if at is None else at)  # fmt: skip
        return str(conn.one("SELECT public_id FROM events WHERE id = ?", (event_id,))[0])

    return db.write(run)


def delivery(db: Database, event_id: str) -> dict[str, Any]:
    sql = "FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.public_id = ?"
    row = row_of(db, sql, (event_id,), "d.state, d.attempts, d.next_attempt_at")
    return {name.removeprefix("d."): value for name, value in row.items()}


def endpoint(db: Database, webhook_id: str) -> store.Endpoint:
    found = db.read(store.webhook, webhook_id, None)
    assert found is not None
    return found


def dispatch(db: Database, **options: Any) -> int:
    """Run a dispatcher (allowed to reach loopback) until nothing is due; its attempts."""

    async def run() -> int:
        writer = Writer(db)
        writer.start()
        try:
            options.setdefault("allow_private", True)
            return await Dispatcher(writer, MAILER, lease=LEASE, **options).deliver_due()
        finally:
            await writer.stop()

    return asyncio.run(run())


def verified(secret: str, request: Any) -> Any:
    """The payload, if the reference package verifies the request with ``secret``."""
    return Webhook(secret).verify(request.body, request.headers)


def signed_with(secret: str, request: Any) -> bool:
    """Whether one of the request's signatures is the reference package's, with ``secret``, for
    its id, timestamp and body (also for timestamps of a test's clock, far from now)."""
    moment = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
    mine = Webhook(secret).sign(request.headers["webhook-id"], moment, request.body.decode())
    return mine in request.headers["webhook-signature"].split(" ")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as found:
        yield found


@pytest.fixture
def private_services(settings: Settings, db: Database) -> Services:
    """A server allowed to reach loopback, whose dispatcher wakes only when poked."""
    services = Services.open(dataclasses.replace(settings, allow_private_webhooks=True))
    services.dispatcher.poll = 3600
    return services


@pytest.fixture
def hooks_client(private_services: Services) -> Iterator[TestClient]:
    with TestClient(App(private_services), client=PEER) as client:
        yield client


# --- the API ------------------------------------------------------------------------------------


def test_a_user_subscribes_a_url_and_sees_it_again_without_its_secret(
    hooks_client: TestClient, alice: Persona
) -> None:
    url = "https://hooks.example.test/mailbeacon"
    body = {"url": url, "events": ["email.clicked", "email.opened"]}
    created = hooks_client.post("/api/v1/webhooks", json=body, headers=alice.auth)
    assert created.status_code == 201, created.text
    found = created.json()
    assert found["id"].startswith("wh_")
    assert found["secret"].startswith("whsec_")
    assert len(Webhook(found["secret"])._whsecret) == 32
    assert (found["url"], found["events"], found["enabled"]) == (
        url,
        ["email.opened", "email.clicked"],
        True,
    )
    shown = {k: v for k, v in found.items() if k != "secret"}
    listed = hooks_client.get("/api/v1/webhooks", headers=alice.auth).json()
    assert listed == {"webhooks": [shown]}
    one = hooks_client.get(f"/api/v1/webhooks/{found['id']}", headers=alice.auth)
    assert one.json() == shown


def test_an_outsider_cannot_see_or_touch_an_endpoint(
    hooks_client: TestClient, alice: Persona, bob: Persona
) -> None:
    body = {"url": "https://hooks.example.test/", "events": ["email.opened"]}
    webhook_id = hooks_client.post("/api/v1/webhooks", json=body, headers=alice.auth).json()["id"]
    path = f"/api/v1/webhooks/{webhook_id}"
    assert hooks_client.get("/api/v1/webhooks", headers=bob.auth).json() == {"webhooks": []}
    for method, where in (
        ("GET", path),
        ("PATCH", path),
        ("DELETE", path),
        ("POST", f"{path}/rotate-secret"),
        ("GET", f"{path}/deliveries"),
    ):
        json_body = {"enabled": False} if method == "PATCH" else None
        answer = hooks_client.request(method, where, json=json_body, headers=bob.auth)
        assert answer.status_code == 404, (method, where)
        assert answer.json() == {"error": "no such webhook"}
    assert hooks_client.get(path, headers=alice.auth).json()["enabled"] is True


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"url": "ftp://hooks.example.test/", "events": ["email.opened"]}, "not an http:// or"),
        ({"url": "https:///nohost", "events": ["email.opened"]}, "has no host"),
        ({"url": "https://a b.example.test/", "events": ["email.opened"]}, "without spaces"),
        ({"url": "https://u:p@hooks.example.test/", "events": ["email.opened"]}, "password"),
        ({"url": "https://hooks.example.test:99999/", "events": ["email.opened"]}, "bad port"),
        ({"url": 7, "events": ["email.opened"]}, "expected an http:// or https:// URL"),
        ({"url": "https://hooks.example.test/"}, "events: expected a non-empty list"),
        ({"url": "https://hooks.example.test/", "events": []}, "events: expected a non-empty"),
        ({"url": "https://hooks.example.test/", "events": ["email.read"]}, "'email.read' is not"),
        ({"url": "https://hooks.example.test/", "events": ["*"], "x": 1}, "unknown fields x"),
    ],
)
def test_it_refuses_a_bad_url_or_unknown_events_saying_why(
    hooks_client: TestClient, alice: Persona, body: dict[str, Any], error: str
) -> None:
    answer = hooks_client.post("/api/v1/webhooks", json=body, headers=alice.auth)
    assert answer.status_code == 422
    assert error in answer.json()["error"]
    if "email.read" in error:  # the message names the event types there are
        assert all(t in answer.json()["error"] for t in EVENT_TYPES)
    assert hooks_client.get("/api/v1/webhooks", headers=alice.auth).json() == {"webhooks": []}


def test_patch_changes_an_endpoint_and_delete_removes_it_with_its_deliveries(
    hooks_client: TestClient, db: Database, alice: Persona
) -> None:
    webhook_id, _ = subscribe(db, alice, "http://127.0.0.1:9/old")
    path = f"/api/v1/webhooks/{webhook_id}"
    change = {"url": "http://127.0.0.1:9/new", "events": ["email.hit"]}
    changed = hooks_client.patch(path, json=change, headers=alice.auth).json()
    assert (changed["url"], changed["events"]) == ("http://127.0.0.1:9/new", ["email.hit"])
    assert db.read(lambda c: c.one("SELECT raw_hits FROM webhooks WHERE id = ?", (webhook_id,)))[0]
    bad = hooks_client.patch(path, json={"enabled": "yes"}, headers=alice.auth)
    assert (bad.status_code, bad.json()["error"]) == (422, "enabled: expected true or false")
    assert hooks_client.patch(path, json={}, headers=alice.auth).status_code == 422

    off = hooks_client.patch(path, json={"enabled": False}, headers=alice.auth).json()
    assert off["enabled"] is False
    assert off["disabled_reason"].startswith("disabled by its owner on ")
    assert hooks_client.delete(path, headers=alice.auth).status_code == 204
    assert hooks_client.get(path, headers=alice.auth).status_code == 404
    assert hooks_client.delete(path, headers=alice.auth).status_code == 404


def test_the_delivery_log_shows_every_attempt_page_by_page(
    hooks_client: TestClient, db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, _ = subscribe(db, alice, receiver.url)
    event_id = publish(db, alice)
    receiver.replies.append(Reply(500, body=b"database down"))
    start = now_us()
    dispatch(db, clock=lambda: start)
    dispatch(db, clock=lambda: start + 10 * SECOND)
    path = f"/api/v1/webhooks/{webhook_id}/deliveries"
    first = hooks_client.get(f"{path}?limit=1", headers=alice.auth).json()
    [failed] = first["deliveries"]
    assert failed["event_type"] == "email.opened"
    assert failed["webhook_id"] == event_id
    assert (failed["status"], failed["error"]) == (500, "answered 500: database down")
    assert failed["state"] == "delivered"  # the delivery's state now: the second attempt took
    assert failed["duration_ms"] >= 0
    rest = hooks_client.get(f"{path}?after={first['next']}", headers=alice.auth).json()
    [took] = rest["deliveries"]
    assert (took["status"], took["error"], took["webhook_id"]) == (200, None, event_id)
    assert took["time"] > failed["time"]
    assert hooks_client.get(f"{path}?after=x", headers=alice.auth).status_code == 400


def test_the_openapi_document_describes_webhooks_and_their_payloads_from_their_definitions(
    hooks_client: TestClient,
) -> None:
    spec = hooks_client.get("/api/v1/openapi.json").json()
    assert {
        "/api/v1/webhooks",
        "/api/v1/webhooks/{webhook_id}",
        "/api/v1/webhooks/{webhook_id}/rotate-secret",
        "/api/v1/webhooks/{webhook_id}/deliveries",
    } <= set(spec["paths"])
    assert list(spec["webhooks"]) == list(EVENT_TYPES)
    schemas = spec["components"]["schemas"]
    opened = spec["webhooks"]["email.opened"]["post"]
    ref = opened["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/EmailOpenedEvent"
    assert {p["name"] for p in opened["parameters"]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    event = schemas["EmailOpenedEvent"]
    assert event["properties"]["data"] == {"$ref": "#/components/schemas/HitData"}
    hit = schemas["HitData"]
    assert list(hit["properties"]) == list(get_type_hints(HitData))
    assert set(hit["properties"]) == set(opened_data())  # what is published has every field
    assert hit["properties"]["kind"] == {"enum": ["open", "click"]}
    assert hit["properties"]["campaign"] == {"type": ["string", "null"]}
    assert hit["properties"]["client"] == {"$ref": "#/components/schemas/Client"}
    assert "email.opened" in hit["description"]
    bounce = schemas["BounceData"]
    assert bounce["required"] == ["message_id", "recipient", "error"]  # subject: NotRequired


# --- delivering ---------------------------------------------------------------------------------


def test_a_2xx_delivers_the_event_signed_the_standard_webhooks_way(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, secret = subscribe(db, alice, receiver.url)
    before = now_us()
    event_id = publish(db, alice, at=before)
    assert dispatch(db) == 1
    [request] = receiver.requests
    assert request.path == PATH
    assert verified(secret, request) == {
        "type": "email.opened",
        "timestamp": iso(before),
        "data": opened_data(),
    }
    headers = request.headers
    assert headers["webhook-id"] == event_id
    assert before // SECOND <= int(headers["webhook-timestamp"]) <= now_us() // SECOND
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    assert len(headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        verified(webhooks.new_secret(), request)
    assert delivery(db, event_id)["state"] == "delivered"
    assert endpoint(db, webhook_id).failing_since is None
    assert dispatch(db) == 0  # delivered: never again


def test_retries_follow_the_schedule_with_jitter_and_the_same_webhook_id(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    """At once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later, each ±20%."""
    assert BACKOFF == (5, 300, 1800, 7200, 18000, 36000, 36000)
    _, secret = subscribe(db, alice, receiver.url)
    clock = Clock(now_us())
    event_id = publish(db, alice, at=clock.now)
    receiver.replies += [Reply(500)] * 8
    for attempt, delay in enumerate(BACKOFF, start=1):
        assert dispatch(db, clock=clock) == 1
        found = delivery(db, event_id)
        assert (found["state"], found["attempts"]) == ("pending", attempt)
        waited = (found["next_attempt_at"] - clock.now) / SECOND
        assert delay * (1 - JITTER) <= waited <= delay * (1 + JITTER)
        clock.now = found["next_attempt_at"] - 1
        assert dispatch(db, clock=clock) == 0  # not yet
        clock.now += 1
    assert dispatch(db, clock=clock) == 1
    assert (delivery(db, event_id)["state"], delivery(db, event_id)["attempts"]) == ("failed", 8)
    assert dispatch(db, clock=lambda: clock.now + 30 * DAY) == 0
    assert len(receiver.requests) == 8
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event_id}
    assert all(signed_with(secret, r) for r in receiver.requests)
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    assert stamps == sorted(stamps)  # each attempt is signed at its own time


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, _ = subscribe(db, alice, receiver.url)
    event_id = publish(db, alice)
    elsewhere = receiver.url.replace(PATH, "/elsewhere")
    receiver.replies.append(Reply(307, {"Location": elsewhere}))
    dispatch(db)
    assert [r.path for r in receiver.requests] == [PATH]
    assert (delivery(db, event_id)["state"], delivery(db, event_id)["attempts"]) == ("pending", 1)
    [attempt] = db.read(store.attempts, webhook_id, 0, 10)
    assert attempt.status == 307
    assert attempt.error is not None
    assert "redirects are not followed" in attempt.error
    assert elsewhere in attempt.error
    assert endpoint(db, webhook_id).failing_since is not None


def test_410_gone_disables_the_endpoint_and_enabling_it_delivers_what_waited(
    db: Database, alice: Persona, receiver: Receiver, env: dict[str, str]
) -> None:
    webhook_id, secret = subscribe(db, alice, receiver.url)
    event_id = publish(db, alice)
    receiver.replies.append(Reply(410))
    start = now_us()
    dispatch(db, clock=lambda: start)
    gone = endpoint(db, webhook_id)
    assert not gone.enabled
    assert gone.disabled_reason is not None
    assert "410 Gone" in gone.disabled_reason
    assert delivery(db, event_id)["state"] == "pending"  # it waits
    assert dispatch(db, clock=lambda: start + 2 * DAY) == 0  # but is not attempted

    result = runner.invoke(cli, ["webhooks", "enable", webhook_id, "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["enabled"] is True
    assert delivery(db, event_id)["next_attempt_at"] <= now_us()  # due at once
    assert dispatch(db) == 1
    assert delivery(db, event_id)["state"] == "delivered"
    assert verified(secret, receiver.requests[-1])["type"] == "email.opened"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_up_to_the_delay_after_the_next(
    db: Database, alice: Persona, receiver: Receiver, status: int
) -> None:
    subscribe(db, alice, receiver.url)
    clock = Clock(now_us())
    event_id = publish(db, alice, at=clock.now)

    def waited_after(reply: Reply) -> float:
        receiver.replies.append(reply)
        dispatch(db, clock=clock)
        found = delivery(db, event_id)
        waited = (found["next_attempt_at"] - clock.now) / SECOND
        clock.now = found["next_attempt_at"]
        return waited

    assert waited_after(Reply(status, {"Retry-After": "120"})) == 120  # rather than about 5 s
    # An HTTP date an hour on: more than the next-but-one delay (30 min), so 30 min.
    later = datetime.fromtimestamp(clock.now / SECOND + 3600, UTC)
    assert waited_after(Reply(status, {"Retry-After": format_datetime(later, usegmt=True)})) == 1800
    # Sooner than the schedule: the schedule (30 min ±20%).
    assert 1440 <= waited_after(Reply(status, {"Retry-After": "1"})) <= 2160
    # Only 429 and 503 may ask.
    assert 5760 <= waited_after(Reply(500, {"Retry-After": "36000"})) <= 8640


def test_an_endpoint_that_does_not_answer_in_time_fails_the_attempt(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, _ = subscribe(db, alice, receiver.url)
    event_id = publish(db, alice)
    receiver.replies.append(Reply(hang=30))
    started = time.monotonic()
    dispatch(db, timeout=0.3)
    assert time.monotonic() - started < 5
    [attempt] = db.read(store.attempts, webhook_id, 0, 10)
    assert attempt.status is None
    assert attempt.error == f"no answer from {receiver.url.split('/')[2]} within 0.3 s"
    assert 0.3 * SECOND <= attempt.duration_us < 5 * SECOND
    assert delivery(db, event_id)["state"] == "pending"
    assert http.TIMEOUT == 15


def test_a_refused_connection_is_a_failure_tried_again(db: Database, alice: Persona) -> None:
    with Receiver() as gone:
        url = gone.url
    webhook_id, _ = subscribe(db, alice, url)
    event_id = publish(db, alice)
    dispatch(db)
    [attempt] = db.read(store.attempts, webhook_id, 0, 10)
    assert attempt.error is not None
    assert attempt.error.startswith(f"could not connect to {url.split('/')[2]}")
    assert (delivery(db, event_id)["state"], delivery(db, event_id)["attempts"]) == ("pending", 1)


def test_five_days_of_failures_disable_the_endpoint_and_tell_its_owner(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, _ = subscribe(db, alice, receiver.url)
    receiver.replies += [Reply(500)] * 100
    start = now_us()
    publish(db, alice, at=start)
    dispatch(db, clock=lambda: start)
    assert endpoint(db, webhook_id).failing_since == start
    almost = start + FAILING_LIMIT * SECOND - HOUR
    publish(db, alice, at=almost)
    dispatch(db, clock=lambda: almost)
    assert endpoint(db, webhook_id).enabled

    end = start + FAILING_LIMIT * SECOND
    publish(db, alice, at=end)
    dispatch(db, clock=lambda: end)
    disabled = endpoint(db, webhook_id)
    assert not disabled.enabled
    assert disabled.disabled_reason is not None
    assert disabled.disabled_reason.startswith("every delivery failed for 5 days, since ")
    assert "answered 500" in disabled.disabled_reason
    told = db.read(
        lambda conn: conn.execute(
            "SELECT rcpt_to, data FROM outbound WHERE user_id = ?", (alice.id,)
        )
    )
    [(to, data)] = told
    assert to == alice.email
    mail = message_from_bytes(bytes(data), policy=default)
    assert mail["Subject"] == f"Your webhook to {receiver.url.split('/')[2]} is disabled"
    text = mail.get_content()
    assert disabled.disabled_reason in text
    assert f"mailbeacon webhooks enable {webhook_id}" in text


def test_a_success_clears_the_endpoints_record_of_failures(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, _ = subscribe(db, alice, receiver.url)
    receiver.replies.append(Reply(502))
    start = now_us()
    publish(db, alice, at=start)
    dispatch(db, clock=lambda: start)
    assert endpoint(db, webhook_id).failing_since == start
    dispatch(db, clock=lambda: start + 10 * SECOND)
    assert endpoint(db, webhook_id).failing_since is None


def test_a_rotated_secret_signs_beside_the_new_one_for_a_day(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    webhook_id, old = subscribe(db, alice, receiver.url)
    rotated_at = now_us()
    new = db.write(webhooks.rotate_secret, webhook_id, None, now=rotated_at)
    assert new is not None
    assert new.startswith("whsec_")
    assert new != old
    publish(db, alice)
    dispatch(db)
    [during] = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, during) == verified(new, during)  # either secret verifies it

    later = rotated_at + 24 * HOUR + SECOND
    publish(db, alice, at=later)
    dispatch(db, clock=lambda: later)
    after = receiver.requests[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert signed_with(new, after)
    assert not signed_with(old, after)


def test_a_few_deliveries_are_in_flight_at_once(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    subscribe(db, alice, receiver.url)
    for _ in range(12):
        publish(db, alice)
    receiver.replies += [Reply(hang=0.3)] * 12
    started = time.monotonic()
    assert dispatch(db, concurrency=4) == 12
    assert time.monotonic() - started < 12 * 0.3  # not one after the other
    assert receiver.most_at_once == 4
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 12


# --- durability ---------------------------------------------------------------------------------


def test_a_restarted_server_delivers_what_was_pending(
    settings: Settings, db: Database, alice: Persona, receiver: Receiver
) -> None:
    _, secret = subscribe(db, alice, receiver.url)
    receiver.replies.append(Reply(503))
    start = now_us()
    event_id = publish(db, alice, at=start)
    dispatch(db, clock=lambda: start)  # fails, then the process stops
    assert delivery(db, event_id)["state"] == "pending"

    # A new server on the same store, once the retry is due, delivers it on starting.
    services = Services.open(dataclasses.replace(settings, allow_private_webhooks=True))
    services.dispatcher.clock = lambda: start + 10 * SECOND
    with TestClient(App(services), client=PEER):
        deadline = time.monotonic() + 10
        while delivery(db, event_id)["state"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.02)
    assert delivery(db, event_id)["state"] == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event_id, event_id]
    assert signed_with(secret, receiver.requests[-1])


def test_the_running_server_delivers_as_soon_as_it_is_poked(
    private_services: Services,
    hooks_client: TestClient,
    db: Database,
    alice: Persona,
    receiver: Receiver,
) -> None:
    subscribe(db, alice, receiver.url)
    time.sleep(0.2)  # the dispatcher looked on starting, found nothing, sleeps for an hour
    event_id = publish(db, alice)
    private_services.dispatcher.poke()  # from another thread than the server's
    deadline = time.monotonic() + 10
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event_id]


def test_a_delivery_claimed_by_a_dispatcher_that_died_is_delivered_after_its_lease(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    subscribe(db, alice, receiver.url)
    event_id = publish(db, alice)
    now, lease = now_us(), int(LEASE * SECOND)
    [claimed] = db.write(store.claim_deliveries, now=now, until=now + lease, limit=10)  # kill -9
    assert claimed.event_id == event_id
    assert dispatch(db, clock=lambda: now + SECOND) == 0
    assert dispatch(db, clock=lambda: now + lease) == 1
    assert len(receiver.requests) == 1


def test_concurrent_claimers_pass_over_each_others_deliveries(db: Database, alice: Persona) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: claims cannot overlap")
    subscribe(db, alice, "http://127.0.0.1:9/")
    ids = {publish(db, alice) for _ in range(6)}
    now = now_us()
    with db.transaction() as first:
        mine = store.claim_deliveries(first, now=now, until=now + SECOND, limit=3)
        # Not committed yet: a second node skips these rows, without waiting.
        theirs = db.write(store.claim_deliveries, now=now, until=now + SECOND, limit=10)
    assert len(mine) == 3
    assert {d.event_id for d in mine} | {d.event_id for d in theirs} == ids
    assert not {d.id for d in mine} & {d.id for d in theirs}


# --- the address guard --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),  # IPv6 unique local
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("0.0.0.0", "the unspecified address"),  # noqa: S104 (an address refused, not bound)
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("::ffff:10.0.0.1", "a private address (10.0.0.1) inside an IPv6 address"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address (169.254.169.254) inside an IPv6"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_only_public_addresses_may_be_sent_to(address: str, kind: str | None) -> None:
    why = http.refusal(ipaddress.ip_address(address))
    assert why == kind if kind is None else why is not None and why.startswith(kind)


class Network(httpcore.AsyncNetworkBackend):
    """Stands for the network beyond this machine: records where it is asked to connect, and
    connects only to loopback (the tests' receivers)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._loopback = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, *args: Any) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"this test reaches no {host}")
        return await self._loopback.connect_tcp(host, port, *args)


def post(url: str, network: Network, *, allow_private: bool) -> http.Answer:
    async def run() -> http.Answer:
        async with http.Poster(allow_private=allow_private, backend=network) as poster:
            return await poster.post(url, {}, b"{}")

    return asyncio.run(run())


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "https://192.168.0.10:8443/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[fd12:3456::1]:8080/hook",
        "http://[::ffff:10.0.0.1]/",
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",  # a name that resolves to loopback
    ],
)
def test_the_guard_never_connects_to_a_private_address(url: str) -> None:
    network = Network()
    with pytest.raises(http.PrivateAddress, match="--allow-private-webhooks"):
        post(url, network, allow_private=False)
    assert network.asked == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/",  # … in hexadecimal
        "http://0177.0.0.1/",  # … in octal
        "http://0x7f.1/",  # … in mixed short form
        "http://127.1/",
        "http://0/",  # 0.0.0.0, which Linux connects to this machine
        "http://[::]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",  # 127.0.0.1 inside IPv6, written out
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",  # the metadata address inside IPv6
        "http://[2002:a9fe:a9fe::]/",  # … inside 6to4
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 as a decimal number
        "http://LocalHost:9/",
    ],
)
def test_the_guard_sees_through_every_spelling_of_a_private_address(url: str) -> None:
    network = Network()
    with pytest.raises(http.PrivateAddress):
        post(url, network, allow_private=False)
    assert network.asked == []


def test_it_connects_to_the_address_it_checked_not_to_the_name_again(receiver: Receiver) -> None:
    """No second lookup for a DNS server to answer differently (rebinding)."""
    network = Network()
    url = receiver.url.replace("127.0.0.1", "localhost")
    assert post(url, network, allow_private=True).status == 200
    assert network.asked
    assert all(ipaddress.ip_address(host).is_loopback for host in network.asked)
    assert receiver.requests[0].headers["host"] == url.split("/")[2]


def test_a_loopback_receiver_gets_nothing_unless_private_addresses_are_allowed(
    db: Database, alice: Persona, receiver: Receiver
) -> None:
    for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
        webhook_id, _ = subscribe(db, alice, url)
        event_id = publish(db, alice)
        dispatch(db, allow_private=False)
        [attempt] = db.read(store.attempts, webhook_id, 0, 10)
        assert attempt.error is not None
        assert "is a loopback address" in attempt.error
        assert "--allow-private-webhooks" in attempt.error
        assert "MAILBEACON_ALLOW_PRIVATE_WEBHOOKS=1" in attempt.error
        assert receiver.requests == []
        db.write(webhooks.delete, webhook_id, None)
    webhook_id, secret = subscribe(db, alice, receiver.url.replace("127.0.0.1", "localhost"))
    event_id = publish(db, alice)
    dispatch(db, allow_private=True)
    assert delivery(db, event_id)["state"] == "delivered"
    assert verified(secret, receiver.requests[0])["type"] == "email.opened"


def test_the_setting_allows_private_addresses(settings: Settings, db: Database) -> None:
    assert not Services.open(settings).dispatcher.allow_private
    allowed = Settings.load(
        {"data": str(settings.data), "secret": "s" * 40},
        environ={"MAILBEACON_ALLOW_PRIVATE_WEBHOOKS": "1"},
    )
    assert allowed.allow_private_webhooks
    assert Services.open(dataclasses.replace(allowed, db=settings.db)).dispatcher.allow_private


def test_tls_names_and_verifies_the_host_while_connecting_to_its_checked_address(
    db: Database, alice: Persona, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path, hosts=["localhost"])  # not valid for 127.0.0.1
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    with Receiver(tls=serving, host="localhost") as receiver:
        webhook_id, secret = subscribe(db, alice, receiver.url)
        publish(db, alice)
        dispatch(db, tls=trusting)
        assert receiver.server_names == ["localhost"]
        assert verified(secret, receiver.requests[0])["type"] == "email.opened"
        db.write(webhooks.delete, webhook_id, None)

        subscribe(db, alice, receiver.url.replace("localhost", "127.0.0.1"))
        event_id = publish(db, alice)
        dispatch(db, tls=trusting)
        assert len(receiver.requests) == 1
        assert delivery(db, event_id)["state"] == "pending"
    [attempt] = db.read(store.attempts, endpoint_of(db, alice), 0, 10)
    assert attempt.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in attempt.error


def endpoint_of(db: Database, persona: Persona) -> str:
    [only] = db.read(store.webhooks, persona.id)
    return only.id


# --- the CLI ------------------------------------------------------------------------------------


def test_the_cli_adds_lists_rotates_switches_and_deletes_endpoints(
    db: Database, alice: Persona, bob: Persona, env: dict[str, str]
) -> None:
    url = "https://hooks.example.test/in"
    added = runner.invoke(
        cli,
        ["webhooks", "add", url, "--user", alice.email, "--event", "email.opened",
         "--event", "email.bounced", "--json"],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    found = json.loads(added.stdout)
    assert found["secret"].startswith("whsec_")
    assert found["events"] == ["email.opened", "email.bounced"]
    webhook_id = found["id"]
    subscribe(db, bob, "https://bob.example.test/")

    everyone = json.loads(runner.invoke(cli, ["webhooks", "list", "--json"], env=env).stdout)
    assert {e["user"] for e in everyone["webhooks"]} == {alice.email, bob.email}
    hers = runner.invoke(cli, ["webhooks", "list", "--user", alice.email], env=env)
    assert webhook_id in hers.output
    assert url in hers.output
    assert "bob.example.test" not in hers.output

    shown = runner.invoke(cli, ["webhooks", "add", url, "--user", alice.email], env=env)
    assert shown.exit_code == 1
    assert "events: expected a non-empty list" in shown.output
    plain = runner.invoke(
        cli, ["webhooks", "add", url, "--event", "email.hit", "--user", alice.email], env=env
    )
    assert "Secret (shown once): whsec_" in plain.output

    rotated = runner.invoke(cli, ["webhooks", "rotate-secret", webhook_id, "--json"], env=env)
    assert json.loads(rotated.stdout)["secret"] not in (found["secret"], None)
    assert len(endpoint(db, webhook_id).secrets) == 2

    off = runner.invoke(cli, ["webhooks", "disable", webhook_id], env=env)
    assert "disabled by its owner" in off.output
    assert not endpoint(db, webhook_id).enabled
    assert runner.invoke(cli, ["webhooks", "enable", webhook_id], env=env).exit_code == 0
    assert endpoint(db, webhook_id).enabled

    log = runner.invoke(cli, ["webhooks", "deliveries", webhook_id, "--json"], env=env)
    assert json.loads(log.stdout) == {"deliveries": [], "next": "0"}
    assert runner.invoke(cli, ["webhooks", "delete", webhook_id], env=env).exit_code == 0
    again = runner.invoke(cli, ["webhooks", "delete", webhook_id], env=env)
    assert again.exit_code == 1
    assert "no webhook" in again.output


def test_the_cli_prints_what_endpoints_said_as_it_is(
    db: Database, alice: Persona, receiver: Receiver, env: dict[str, str]
) -> None:
    """An endpoint's answer is someone else's text: no Rich markup is read into it."""
    url = receiver.url + "?[bold]x[/bold]"
    webhook_id, _ = subscribe(db, alice, url)
    publish(db, alice)
    receiver.replies.append(Reply(500, body=b"[red]boom[/red] :x:"))
    dispatch(db)
    listed = runner.invoke(cli, ["webhooks", "list"], env=env)
    assert url in listed.output
    log = runner.invoke(cli, ["webhooks", "deliveries", webhook_id], env=env)
    assert log.exit_code == 0, log.output
    assert "answered 500: [red]boom[/red] :x:" in log.output
    assert "email.opened" in log.output
