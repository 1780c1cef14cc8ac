from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mailbeacon.store.db import Database
from mailbeacon.web.tracking import GIF
from tests.conftest import Persona, path_of, send


def hits(client: TestClient, persona: Persona, message_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/messages/{message_id}", headers=persona.auth)
    assert response.status_code == 200
    return list(response.json()["hits"])


def test_it_answers_a_43_byte_gif_that_is_never_cached(client: TestClient, alice: Persona) -> None:
    response = client.get(path_of(send(client, alice)["pixel_url"]))
    assert response.status_code == 200
    assert response.content == GIF
    assert len(GIF) == 43
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == "no-cache, no-store, must-revalidate, max-age=0"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["expires"] == "0"
    assert response.headers["x-robots-tag"] == "noindex"


def test_it_records_an_open_with_what_the_request_carried(
    client: TestClient, alice: Persona
) -> None:
    message = send(client, alice)
    client.get(
        path_of(message["pixel_url"]),
        headers={
            "User-Agent": "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115.5.0",
            "Accept": "image/*",
            "Accept-Language": "fr-FR",
            "Referer": "https://mail.example.test/",
            "Via": "1.1 proxy",
            "Sec-Purpose": "prefetch",
        },
    )
    [hit] = hits(client, alice, message["id"])
    assert hit["kind"] == "open"
    assert hit["method"] == "GET"
    assert hit["ip"] == "203.0.113.7"
    assert hit["user_agent"] == "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115.5.0"
    # Thunderbird, but marked as a prefetch: nobody looked yet.
    assert (hit["verdict"], hit["agent"]) == ("machine", "prefetch")
    assert hit["reasons"][0]["rule"] == "prefetch_header"
    assert hit["client"] == {"name": "Thunderbird", "type": "desktop", "os": "Windows 10"}


def test_it_stores_accept_language_referer_via_and_purpose(
    client: TestClient, alice: Persona, db: Database
) -> None:
    message = send(client, alice)
    client.get(
        path_of(message["pixel_url"]),
        headers={"Accept-Language": "fr-FR", "Referer": "r", "Via": "v", "Purpose": "preview"},
    )
    row = db.read(lambda conn: conn.one("SELECT accept_language, referer, via, purpose FROM hits"))
    assert row == ("fr-FR", "r", "v", "preview")


def test_head_is_answered_without_a_body_and_recorded_as_head(
    client: TestClient, alice: Persona
) -> None:
    message = send(client, alice)
    response = client.head(path_of(message["pixel_url"]))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "43"
    assert [h["method"] for h in hits(client, alice, message["id"])] == ["HEAD"]


def test_it_answers_the_gif_for_a_forged_token_and_records_nothing(
    client: TestClient, alice: Persona, db: Database
) -> None:
    message = send(client, alice)
    token = path_of(message["pixel_url"])[3:-4]
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for path in (f"/o/{forged}.gif", "/o/nothing.gif", "/o/", f"/o/{token}", f"/o/{token}.png"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.content == GIF
    assert db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits")) == (0,)


def test_it_truncates_long_user_agents(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": "A" * 5000})
    [hit] = hits(client, alice, message["id"])
    assert hit["user_agent"] == "A" * 512


def test_it_stores_hostile_bytes_as_text(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    agent = '"><img src=x onerror=alert(1)>\u202e\u200b'
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": agent.encode()})
    [hit] = hits(client, alice, message["id"])
    assert hit["user_agent"] == agent


def test_it_ignores_x_forwarded_for_from_an_untrusted_peer(
    client: TestClient, alice: Persona
) -> None:
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"X-Forwarded-For": "198.51.100.1"})
    [hit] = hits(client, alice, message["id"])
    assert hit["ip"] == "203.0.113.7"


def test_it_refuses_other_methods_and_records_nothing(
    client: TestClient, alice: Persona, db: Database
) -> None:
    message = send(client, alice)
    response = client.post(path_of(message["pixel_url"]))
    assert response.status_code == 405
    assert db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits")) == (0,)


def test_it_still_answers_when_storage_fails_and_says_so_in_the_log(
    client: TestClient, alice: Persona, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    message = send(client, alice)
    db.write(lambda conn: conn.execute("DROP TABLE hits"))
    response = client.get(path_of(message["pixel_url"]))
    assert response.status_code == 200
    assert response.content == GIF
    assert "could not store 1 hits" in caplog.text
    assert "spooling them" in caplog.text  # tests/test_spool.py: and stored later


def test_robots_are_told_to_stay_away(client: TestClient) -> None:
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert "Disallow: /o/" in response.text
    assert "Disallow: /c/" in response.text


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(["/o/", "/c/"]),
    tail=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    headers=st.dictionaries(
        st.sampled_from(["user-agent", "x-forwarded-for", "accept", "referer", "purpose"]),
        header_text,
    ),
)
def test_no_path_token_header_or_method_makes_a_tracking_route_fail(
    client: TestClient, prefix: str, tail: str, method: str, headers: dict[str, str]
) -> None:
    response = client.request(method, prefix + tail, headers=headers)
    assert response.status_code < 500
    if prefix == "/o/" and method in ("GET", "HEAD"):
        assert response.status_code == 200
