"""Forged, truncated, re-signed and re-encoded tracking tokens, and open redirects: a token
records a hit and a link leads somewhere only as it was signed, to the URL it was registered
with. (Hostile text through every route is in test_security.py.)

Personas: alice sends the messages.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from urllib.parse import quote

from starlette.testclient import TestClient

from mailbeacon.store.db import Database
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send

PLAIN_LINK = "https://shop.example.test/plain"
EVIL = "evil.example"


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
