"""The security corpus: hostile text through every route and into everything that shows it,
forged and re-encoded tokens, open redirects, an outsider on every API route, brute force. (SMTP
smuggling is in test_relay_security.py and test_relay.py, the webhook guard's SSRF cases in
test_webhooks.py.)

Routes are read from the application itself, so a route added later is attacked too. Hostile
strings are data (``tests/corpus/security/hostile.json``, each with why it is there). Everything
is checked where it lands: the rows stored, the API's JSON, the dashboard's HTML, the webhook
bodies as received, ``mailbeacon explain`` as printed.

Personas: alice owns the data, bob is an outsider, mallory has no account at all.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote

import httpx
import pytest
from markupsafe import escape
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.accounts import now_us
from mailbeacon.classify.settle import settle_all
from mailbeacon.cli import app as cli
from mailbeacon.store.db import Database
from mailbeacon.text import single_line, unstorable
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from mailbeacon.web.views import visible
from tests.conftest import PEER, Persona, path_of, send
from tests.support.peers import Peers
from tests.support.receiver import Receiver
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
EVIL = "evil.example"
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


def served_routes(app: App) -> list[tuple[str, str]]:
    """(method, path template) of every route the application serves."""
    # The tracking routes are raw ASGI in front of Starlette (web/app.py), matched by prefix.
    found = [(m, p) for m in ("GET", "HEAD") for p in ("/o/{token}.gif", "/c/{token}")]
    for route in app.starlette.routes:
        if isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
        elif isinstance(route, Mount):
            found.append(("GET", route.path + "/{path}"))
    # Signing in and out last: they would end the session that the other requests use.
    return sorted(found, key=lambda route: route[1] in ("/login", "/logout"))


def api_routes(app: App) -> list[tuple[str, str]]:
    return [(m, p) for m, p in served_routes(app) if p.startswith("/api/") and "openapi" not in p]


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]*\}", lambda _: value, template)


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


# --- tokens ---------------------------------------------------------------------------------------

OTHER_SECRET = "another-secret-" + "y" * 40
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def hits(db: Database) -> int:
    row = db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits"))
    assert row is not None
    return int(row[0])


def flipped(token: str) -> Iterator[str]:
    """The token with one bit changed, for every byte's lowest and highest bit."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for at, bit in itertools.product(range(len(raw)), (0x01, 0x80)):
        changed = bytearray(raw)
        changed[at] ^= bit
        yield base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode()


def re_encoded(token: str) -> Iterator[str]:
    """The same bytes written otherwise: padding, the standard alphabet, the case changed,
    spare bits set, characters that are not base64url, percent-encoded forms of those."""
    yield from (token + "=", token + "==", token + "%3D", token + ".", token + "%00")
    yield token.replace("-", "+").replace("_", "/")
    yield token.replace("-", "%2B").replace("_", "%2F")
    yield from (token.upper(), token.lower(), token.swapcase())
    yield from (token[:-1] + c for c in ALPHABET if c != token[-1])
    yield from ("%20" + token, token + "%20", token + "%09", token[:8] + "%0A" + token[8:])
    yield base64.b64encode(base64.urlsafe_b64decode(token + "==")).decode()


def token_variants(signer: Signer, kind: str, token: str, message_id: str) -> set[str]:
    other = Signer([OTHER_SECRET])
    link = 0 if kind == "c" else None
    wrong_kinds = [k for k in ("o", "c", "u", "m") if k != kind]
    variants = {
        token[:-1], token[1:], token[: len(token) // 2], "", token + "A", "A" + token,
        other.sign(kind, message_id, link),  # re-signed with another secret
        *(signer.sign(k, message_id, 0 if k == "c" else None) for k in wrong_kinds),
        *flipped(token), *re_encoded(token),
    }  # fmt: skip
    return variants - {token}


def test_forged_truncated_re_signed_and_re_encoded_tokens_record_nothing(
    client: TestClient, services: Services, db: Database, alice: Persona
) -> None:
    message = send(client, alice, to=[f"r{n}@example.test" for n in range(8)])
    pixel = path_of(message["pixel_url"])[3:-4]
    click = path_of(message["links"][0]["tracked_url"])[3:]
    tried = 0
    for variant in token_variants(services.signer, "o", pixel, message["id"]):
        for method in ("GET", "HEAD"):
            answer = client.request(method, f"/o/{variant}.gif")
            assert answer.status_code == 200, variant
            assert answer.headers["content-type"] == "image/gif"
            tried += 1
    for variant in token_variants(services.signer, "c", click, message["id"]):
        answer = client.get(f"/c/{variant}", follow_redirects=False)
        assert answer.status_code == 404, variant
        assert "location" not in answer.headers
        tried += 1
    assert tried > 300
    assert hits(db) == 0
    # The genuine tokens record: the variants above were turned away for what they are.
    client.get(f"/o/{pixel}.gif")
    client.get(f"/c/{click}", follow_redirects=False)
    assert hits(db) == 2


def test_a_percent_encoded_token_is_the_same_url_and_counts_as_the_genuine_one(
    client: TestClient, db: Database, alice: Persona
) -> None:
    """``%41`` and ``A`` are the same URL (RFC 3986, 6.2.2.2): proxies and clients may write
    either, so the decoded path is verified. Nothing is forged by it: the token is still needed."""
    message = send(client, alice)
    pixel = path_of(message["pixel_url"])[3:-4]
    encoded = "".join(f"%{ord(c):02X}" for c in pixel)
    assert client.get(f"/o/{encoded}.gif").status_code == 200
    answered = client.get(f"/c/{quote(path_of(message['links'][0]['tracked_url'])[3:], safe='')}",
                          follow_redirects=False)  # fmt: skip
    assert answered.headers["location"] == message["links"][0]["url"]
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert [h["kind"] for h in found["hits"]] == ["open", "click"]


# --- open redirects -------------------------------------------------------------------------------

NOT_WEB_LINKS = [
    f"//{EVIL}/a", f"\\\\{EVIL}\\a", f"/\\{EVIL}/a", f"https:{EVIL}/a", f"https:/{EVIL}/a",
    f"https:\\\\{EVIL}/a", "javascript:alert(document.domain)", "jav&#x09;ascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", f"%2F%2F{EVIL}/a", f"/redirect?to=//{EVIL}",
    "https://shop.example.test/&#13;&#10;Set-Cookie:%20pwned=1",
]  # fmt: skip


def test_only_absolute_web_links_are_registered_and_each_redirects_to_itself_only(
    client: TestClient, alice: Persona
) -> None:
    header_split = "https://shop.example.test/%0d%0aSet-Cookie:%20pwned=1"
    anchors = [*NOT_WEB_LINKS, header_split, PLAIN_LINK]
    page = "".join(f'<a href="{href}">x</a>' for href in anchors)  # as written, entities too
    message = send(client, alice, html=page)
    assert [link["url"] for link in message["links"]] == [header_split, PLAIN_LINK]
    for link in message["links"]:
        answer = client.get(path_of(link["tracked_url"]), follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (302, link["url"])
        assert "set-cookie" not in answer.headers


def test_no_token_or_path_trick_leads_anywhere_but_a_registered_url(
    client: TestClient, services: Services, alice: Persona
) -> None:
    shop = send(client, alice, html=f'<a href="{PLAIN_LINK}">x</a>')
    evil = send(client, alice, html=f'<a href="{PLAIN_LINK}">a</a><a href="https://{EVIL}/">b</a>')
    token = path_of(shop["links"][0]["tracked_url"])[3:]
    theirs = path_of(evil["links"][1]["tracked_url"])[3:]
    signer = services.signer
    tricks = [
        token[:16] + theirs[16:],  # shop's message id, evil's link position and tag
        signer.sign("c", shop["id"], 1),  # genuinely signed, for a position shop does not have
        Signer([OTHER_SECRET]).sign("c", shop["id"], 1),
        f"{token}/..%2F..%2F{theirs}", f"{token}%2F%2F{EVIL}", f"{token}//{EVIL}",
        f"/{EVIL}", f"%2F%2F{EVIL}", f"\\\\{EVIL}", f"https:{EVIL}", f"{token}\\{EVIL}",
        f"{token}?url=https://{EVIL}&next=//{EVIL}", f"{token}%3Furl%3Dhttps://{EVIL}",
        f"{token}@{EVIL}", f"{token}%40{EVIL}", f"{token}#https://{EVIL}",
    ]  # fmt: skip
    registered = {PLAIN_LINK, f"https://{EVIL}/"}
    for trick in tricks:
        answer = client.get(f"/c/{trick}", follow_redirects=False)
        location = answer.headers.get("location")
        assert location is None or (location in registered and trick.startswith(token)), trick
        if location is not None:  # what follows the token was not part of it
            assert location == PLAIN_LINK, trick


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


# --- forms ---------------------------------------------------------------------------------------


def test_a_multipart_form_is_not_a_way_around_the_body_limits(lenient: TestClient) -> None:
    """Multipart forms are parsed by Starlette: many parts must not be a way to exhaust it."""
    files = {f"f{n}": (f"{n}.txt", b"x" * 10) for n in range(1500)}
    answer = lenient.post("/login", files=files, headers={"Origin": ORIGIN})
    assert answer.status_code < 500
