"""The security corpus: hostile text through every route and into everything that shows it.
(Forged and re-encoded tokens and open redirects are in test_security_tokens.py; an outsider on
every API route and brute force in test_security_access.py; SMTP smuggling in
test_relay_security.py and test_relay.py, the webhook guard's SSRF cases in test_webhooks.py.)

Routes are read from the application itself (tests/support/routes.py), so a route added later is
attacked too. Hostile strings are data (``tests/corpus/security/hostile.json``, each with why it
is there). Everything is checked where it lands: the rows stored, the API's JSON, the dashboard's
HTML, the webhook bodies as received, ``mailbeacon explain`` as printed.

Personas: alice owns the data.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from markupsafe import escape
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.accounts import now_us
from mailbeacon.classify.settle import settle_all
from mailbeacon.cli import app as cli
from mailbeacon.store.db import Database
from mailbeacon.text import single_line, unstorable
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from mailbeacon.web.views import visible
from tests.conftest import PEER, Persona, path_of
from tests.support.peers import Peers
from tests.support.receiver import Receiver
from tests.support.routes import fill, served_routes
from tests.test_dashboard import sign_in
from tests.test_notify import run as notify_round
from tests.test_webhooks import (
    dispatch,
    private_services,
    subscribe,
    verified,
)

__all__ = ["private_services"]  # a fixture of test_webhooks.py, used here by name

CORPUS = Path(__file__).parent / "corpus" / "security" / "hostile.json"
ORIGIN = "https://t.example.test"
LONG_AGO = "2026-11-30T09:00:00Z"  # hits of a message sent a day ago notify at once
PLAIN_LINK = "https://shop.example.test/plain"
runner = CliRunner()


@dataclass(frozen=True)
class Hostile:
    id: str
    text: str  # as a JSON or form value carries it
    raw: bytes  # as a header or a path carries it (not always UTF-8)
    bytes_only: bool  # no text but bytes (e.g. overlong UTF-8), sent as they are everywhere

    @property
    def is_utf8(self) -> bool:
        try:
            return self.raw.decode("utf-8") == self.text
        except UnicodeDecodeError:
            return False


def _corpus() -> list[Hostile]:
    found = []
    for entry in json.loads(CORPUS.read_text()):
        if "hex" in entry:
            raw = bytes.fromhex(entry["hex"])
            text = raw.decode("utf-8", "replace")
        else:
            text = entry["text"] * entry.get("repeat", 1)
            raw = text.encode("utf-8", "surrogatepass")
        found.append(Hostile(entry["id"], text, raw, bytes_only="hex" in entry))
    return found


HOSTILE = _corpus()
every_hostile = pytest.mark.parametrize("hostile", HOSTILE, ids=[h.id for h in HOSTILE])


# --- what a hostile string must never become ----------------------------------------------------

# Markup of the corpus that would be live if a page printed it as it came.
LIVE_MARKUP = ("<script>window", "<img src=x", "<svg/onload", "href=\"javascript:", "href='java",
               'src="data:', "\u202e", "\u200b", "\u200d", "\u2060", "\ufeff")  # fmt: skip


def assert_shown_as_text(page: str, hostile: Hostile, where: str) -> None:
    for live in LIVE_MARKUP:
        assert live not in page, (where, live)
    if "<" in hostile.text:
        assert hostile.text not in page, where


def assert_answered(response: httpx.Response, hostile: Hostile, where: str) -> None:
    """Answered without failing, without a header of the attacker's, markup shown as text."""
    assert response.status_code < 500, (where, response.status_code, response.text[:300])
    for name, value in response.headers.multi_items():
        assert "pwned" not in name, where
        assert "\r" not in value, (where, name)
        assert "\n" not in value, (where, name)
    assert not any(c.startswith("pwned") for c in response.headers.get_list("set-cookie")), where
    kind = response.headers.get("content-type", "")
    if kind.startswith("text/html"):
        assert_shown_as_text(response.text, hostile, where)
    elif kind.startswith("application/json"):
        response.json()


# --- every route ----------------------------------------------------------------------------------


# Every field some JSON route or form reads: a route ignores those it does not know.
JSON_FIELDS = ("from", "subject", "html", "text", "campaign", "sent_at", "url", "alerts",
               "track_default", "enabled")  # fmt: skip
LIST_FIELDS = ("to", "events")
FORM_FIELDS = ("email", "password", "next", "url", "events", "track_default", "alerts", "q",
               "campaign", "state", "name")  # fmt: skip
QUERY_FIELDS = ("q", "campaign", "state", "before", "after", "limit", "types", "next", "url")


def json_bodies(hostile: Hostile) -> Iterator[bytes]:
    """The hostile string as every scalar, then inside every list: built by hand, because a
    JSON encoder refuses what is not UTF-8, and that is what a server must cope with."""
    value = b'"' + hostile.raw + b'"' if hostile.bytes_only else json.dumps(hostile.text).encode()
    scalars = dict.fromkeys((*JSON_FIELDS, *LIST_FIELDS), "\0")
    lists = {**scalars, **{f: ["\0"] for f in LIST_FIELDS}, "from": "alice@example.test"}
    for shape in (scalars, lists):
        yield json.dumps(shape).encode().replace(b'"\\u0000"', value)


def form_body(hostile: Hostile, csrf: str) -> bytes:
    fields = [f"{name}={quote_from_bytes(hostile.raw)}" for name in FORM_FIELDS]
    return "&".join([f"csrf={csrf}", *fields]).encode()


def hostile_headers(hostile: Hostile, persona: Persona) -> dict[str, Any]:
    return {
        **persona.auth,
        "User-Agent": hostile.raw,
        "Referer": hostile.raw,
        "Accept-Language": hostile.raw,
        "Via": hostile.raw,
        "X-Forwarded-For": hostile.raw,
        "Purpose": hostile.raw,
        # Not a number: the streams (API and dashboard) answer 400 instead of streaming forever.
        "Last-Event-ID": hostile.raw,
        "Origin": ORIGIN,  # our own, so that the forms get past CSRF to their fields
    }


@pytest.fixture
def lenient(services: Services) -> Iterator[TestClient]:
    """The whole app, answering a 500 instead of raising it, as a real server would."""
    app = Peers(App(services))
    with TestClient(
        app, base_url=ORIGIN, client=PEER, raise_server_exceptions=False
    ) as test_client:
        yield test_client


def test_the_route_list_is_the_applications(lenient: TestClient) -> None:
    app: App = lenient.app.app  # type: ignore[attr-defined]  # Peers(App)
    routes = served_routes(app)
    assert len(routes) >= 40
    for expected in [("POST", "/api/v1/messages"), ("GET", "/c/{token}"), ("POST", "/login"),
                     ("GET", "/api/v1/stream"), ("GET", "/static/{path}")]:  # fmt: skip
        assert expected in routes


@every_hostile
def test_every_route_answers_hostile_input_without_failing_or_echoing_markup(
    request: pytest.FixtureRequest,
    lenient: TestClient,
    db: Database,
    alice: Persona,
    hostile: Hostile,
) -> None:
    csrf = sign_in(lenient, db, alice)
    # Each value cut to 1 KB: all of them whole would pass the limit of a URL's length itself.
    query = "&".join(f"{name}={quote_from_bytes(hostile.raw[:1024])}" for name in QUERY_FIELDS)
    app: App = lenient.app.app  # type: ignore[attr-defined]
    answered = 0
    for method, template in served_routes(app):
        path = fill(template, quote_from_bytes(hostile.raw, safe=""))
        bodies: list[tuple[str, bytes | None]] = [("", None)]
        if method not in ("GET", "HEAD"):
            if template.startswith("/api/"):
                bodies = [("application/json", body) for body in json_bodies(hostile)]
            else:
                bodies = [("application/x-www-form-urlencoded", form_body(hostile, csrf))]
        for kind, body in bodies:
            headers = hostile_headers(hostile, alice) | ({"Content-Type": kind} if kind else {})
            response = lenient.request(
                method, f"{path}?{query}", headers=headers, content=body, follow_redirects=False
            )
            assert_answered(response, hostile, f"{method} {template}")
            answered += 1
    assert answered >= 50


# --- where hostile text is shown ------------------------------------------------------------------


@pytest.fixture
def hooks(private_services: Services) -> Iterator[TestClient]:
    """The whole app, with a dispatcher allowed to reach the test's receiver on loopback."""
    with TestClient(Peers(App(private_services)), base_url=ORIGIN, client=PEER) as test_client:
        yield test_client


def hostile_message(
    client: TestClient, persona: Persona, hostile: Hostile
) -> dict[str, Any] | None:
    """A message whose subject, campaign and first link carry the hostile string; None when
    the API refuses it (what is not text)."""
    link = html.escape(f"https://shop.example.test/?q={hostile.text}", quote=True)
    body = {
        "from": persona.email, "to": ["reader@example.test"], "sent_at": LONG_AGO,
        "subject": hostile.text[:200], "campaign": hostile.text[:200],
        "html": f'<a href="{link}">x</a> <a href="{PLAIN_LINK}">y</a>',
    }  # fmt: skip
    response = client.post(
        "/api/v1/messages",
        content=json.dumps(body).encode(),
        headers={**persona.auth, "Content-Type": "application/json"},
    )
    if unstorable(hostile.text):  # NUL, an unpaired surrogate: not text, and said so
        assert response.status_code == 422, response.text[:300]
        assert "not text" in response.json()["error"]
        return None
    assert response.status_code == 201, response.text[:300]
    message: dict[str, Any] = response.json()["messages"][0]
    return message


def campaign_link(client: TestClient) -> str:
    """The campaign page as the list of campaigns links to it (the only campaign there)."""
    [href] = re.findall(r'href="(/campaigns/[^"]+)"', client.get("/campaigns").text)
    return html.unescape(href)


def stored_header(hostile: Hostile) -> str | None:
    """What a hit keeps of the string sent as a header (None: not predictable, not UTF-8)."""
    if not hostile.is_utf8:
        return None
    return hostile.text.replace("\0", "\ufffd")[:512]


@every_hostile
def test_hostile_text_is_kept_as_sent_and_shown_as_text_in_the_api_pages_webhooks_and_cli(
    request: pytest.FixtureRequest,
    *,
    hooks: TestClient,
    services: Services,
    db: Database,
    alice: Persona,
    env: dict[str, str],
    hostile: Hostile,
) -> None:
    with Receiver() as receiver:
        _, secret = subscribe(db, alice, receiver.url, ("email.hit", "email.opened"))
        message = hostile_message(hooks, alice, hostile)
        if message is None:
            return
        headers = {"User-Agent": hostile.raw, "Referer": hostile.raw, "Via": hostile.raw}
        assert hooks.get(path_of(message["pixel_url"]), headers=headers).status_code == 200
        for link in message["links"]:
            clicked = hooks.get(path_of(link["tracked_url"]), headers=headers,
                                follow_redirects=False)  # fmt: skip
            assert clicked.headers["location"] == quote(link["url"], safe="!#$%&'()*+,/:;=?@[]~")

        # The API's JSON: what came is what is kept (the User-Agent cut at 512 characters).
        found = hooks.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
        campaign = single_line(hostile.text[:200], 200) or None  # on one line, as the relay's
        assert (found["subject"], found["campaign"]) == (hostile.text[:200], campaign)
        assert len(found["hits"]) == 1 + len(message["links"])
        for hit in found["hits"]:
            kept = stored_header(hostile)
            assert hit["user_agent"] == kept if kept is not None else "<" not in hit["user_agent"]

        # The dashboard: escaped, invisible characters made visible, nothing live.
        sign_in(hooks, db, alice)
        pages = ["/", "/messages", f"/messages/{message['id']}", "/campaigns",
                 campaign_link(hooks), "/settings"]  # fmt: skip
        for path in pages:
            page = hooks.get(path)
            assert page.status_code == 200, path
            assert_shown_as_text(page.text, hostile, path)
        timeline = hooks.get(f"/messages/{message['id']}").text
        assert str(escape(visible(found["hits"][0]["user_agent"]))) in timeline
        if hostile.id == "template-expression":
            assert "{{7*7}}" in timeline  # printed, never evaluated

        # The webhooks: each body signed, valid JSON with every control character escaped.
        settle_all(db, now_us())
        notify_round(services)
        dispatch(db)
        deadline = time.monotonic() + 10
        while len(receiver.requests) < len(found["hits"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.requests) == len(found["hits"])
        for received in receiver.requests:
            event = verified(secret, received)
            assert event["data"]["subject"] == found["subject"]
            assert not re.search(rb"[\x00-\x1f]", received.body)
            assert event["data"]["url"] in (None, *(link["url"] for link in message["links"]))

    # mailbeacon explain: text, never terminal control sequences or markup.
    explained = runner.invoke(cli, ["explain", message["id"], "--user", alice.email], env=env)
    assert explained.exit_code == 0, explained.output
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", explained.output)
    if hostile.id == "rich-markup":
        assert "[link=javascript:alert(1)]x[/link]" in explained.output


# --- forms ---------------------------------------------------------------------------------------


def test_a_multipart_form_is_not_a_way_around_the_body_limits(lenient: TestClient) -> None:
    """Multipart forms are parsed by Starlette: many parts must not be a way to exhaust it."""
    files = {f"f{n}": (f"{n}.txt", b"x" * 10) for n in range(1500)}
    answer = lenient.post("/login", files=files, headers={"Origin": ORIGIN})
    assert answer.status_code < 500
