"""`/u/{token}`: a GET shows a button, a POST unsubscribes (RFC 8058's one-click POST too), and
`/api/v1/suppressions` lists and lifts what that recorded."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from mailbeacon.accounts import now_us
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.web.services import Services
from tests.conftest import Persona, send

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def unsubscribe_path(services: Services, message: dict[str, Any]) -> str:
    return f"/u/{services.signer.sign('u', message['id'])}"


def listed(client: TestClient, persona: Persona) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/suppressions", headers=persona.auth).json()[
        "suppressions"
    ]
    return found


def test_a_get_shows_a_button_and_unsubscribes_no_one(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice)
    page = client.get(unsubscribe_path(services, message))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text
    assert "reader@example.test" in page.text
    assert "alice@example.test" in page.text
    assert listed(client, alice) == []
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found["unsubscribed"] is False


def test_a_post_unsubscribes_the_recipient_once(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice)
    path = unsubscribe_path(services, message)
    page = client.post(path, data={"confirm": "yes"})
    assert page.status_code == 200
    assert "You are unsubscribed" in page.text
    [suppression] = listed(client, alice)
    assert suppression["address"] == "reader@example.test"
    assert suppression["reason"] == "unsubscribed"
    assert suppression["message_id"] == message["id"]
    assert client.post(path, data={"confirm": "yes"}).status_code == 200
    assert listed(client, alice) == [suppression]  # the same row, its first time kept
    assert "You are unsubscribed" in client.get(path).text
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found["unsubscribed"] is True


def test_a_one_click_post_is_answered_200(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice)
    answer = client.post(
        unsubscribe_path(services, message), content="List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert answer.status_code == 200
    assert [s["reason"] for s in listed(client, alice)] == ["unsubscribed"]


def test_a_one_click_post_as_multipart_form_data_is_answered_200(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice)
    answer = client.post(
        unsubscribe_path(services, message), files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert answer.status_code == 200
    assert len(listed(client, alice)) == 1


def test_a_forged_token_is_404_and_records_nothing(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice)
    genuine = unsubscribe_path(services, message)
    forged = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BA")
    for path in (forged, f"/u/{services.signer.sign('o', message['id'])}", "/u/x"):
        assert client.get(path).status_code == 404
        assert client.post(path, content="List-Unsubscribe=One-Click").status_code == 404
    assert listed(client, alice) == []


def test_an_unsubscribe_is_never_a_hit(
    client: TestClient, services: Services, alice: Persona, db: Database
) -> None:
    message = send(client, alice)
    path = unsubscribe_path(services, message)
    client.get(path)
    client.head(path)
    client.post(path, content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits")) == (0,)
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert (found["hits"], found["state"]) == ([], "not_opened")


def test_the_page_escapes_what_it_shows_and_loads_nothing(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice, to=['"<script>alert(1)</script>"@example.test'])
    page = client.get(unsubscribe_path(services, message))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text
    assert "src=" not in page.text
    assert "href=" not in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "form-action 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_a_huge_body_is_refused_and_records_nothing(
    client: TestClient, services: Services, alice: Persona
) -> None:
    message = send(client, alice)
    answer = client.post(unsubscribe_path(services, message), content=b"x" * 100_000)
    assert answer.status_code == 413
    assert listed(client, alice) == []


def test_robots_are_asked_to_keep_out(client: TestClient) -> None:
    assert "Disallow: /u/" in client.get("/robots.txt").text


def test_an_outsider_neither_sees_nor_lifts_anothers_suppressions(
    client: TestClient, services: Services, alice: Persona, bob: Persona
) -> None:
    message = send(client, alice)
    client.post(unsubscribe_path(services, message), content="List-Unsubscribe=One-Click")
    assert listed(client, bob) == []
    path = "/api/v1/suppressions/reader@example.test"
    assert client.delete(path, headers=bob.auth).status_code == 404
    assert len(listed(client, alice)) == 1
    lifted = client.delete("/api/v1/suppressions/Reader@Example.test", headers=alice.auth)
    assert lifted.status_code == 204  # addresses compare without case
    assert listed(client, alice) == []
    assert client.delete(path, headers=alice.auth).status_code == 404
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found["unsubscribed"] is False


def test_the_suppression_list_pages_by_address(
    client: TestClient, alice: Persona, db: Database
) -> None:
    suppressed = [("c@x.test", "bounced"), ("a@x.test", "unsubscribed"), ("b@x.test", "bounced")]
    for address, reason in suppressed:
        db.write(queries.add_suppression, alice.id, address, reason, None, now=now_us())
    first = client.get("/api/v1/suppressions?limit=2", headers=alice.auth).json()
    assert [s["address"] for s in first["suppressions"]] == ["a@x.test", "b@x.test"]
    assert first["suppressions"][1]["reason"] == "bounced"
    assert first["suppressions"][1]["time"].endswith("Z")
    assert first["next"] == "b@x.test"
    rest = client.get(
        "/api/v1/suppressions", params={"after": first["next"], "limit": 2}, headers=alice.auth
    ).json()
    assert ([s["address"] for s in rest["suppressions"]], rest["next"]) == (["c@x.test"], None)
