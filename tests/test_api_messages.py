from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from mailbeacon.web.api import MAX_BODY
from tests.conftest import HTML, Persona, path_of, send


def test_it_registers_one_tracked_copy_per_recipient(client: TestClient, alice: Persona) -> None:
    body = {
        "from": "Alice <alice@example.test>",
        "to": ["a@example.test", "B <b@example.test>"],
        "subject": "Hello",
        "html": HTML,
    }
    response = client.post("/api/v1/messages", json=body, headers=alice.auth)
    assert response.status_code == 201
    messages = response.json()["messages"]
    assert [m["recipient"] for m in messages] == ["a@example.test", "b@example.test"]
    assert messages[0]["id"] != messages[1]["id"]
    assert messages[0]["pixel_url"] != messages[1]["pixel_url"]
    for m in messages:
        assert m["pixel_url"].startswith("https://t.example.test/o/")
        assert m["pixel_url"] in m["html"].replace("&amp;", "&")
        for link in m["links"]:
            assert link["tracked_url"] in m["html"]


def test_the_message_shows_its_counts_and_hits(client: TestClient, alice: Persona) -> None:
    message = send(client, alice, campaign="december", sent_at="2026-12-01T09:30:00Z")
    outlook = {
        "User-Agent": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328)"
    }
    client.get(path_of(message["pixel_url"]), headers=outlook)
    client.get(path_of(message["pixel_url"]), headers=outlook)
    client.get(path_of(message["links"][0]["tracked_url"]), follow_redirects=False)
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found["counts"] == {
        "opens": 2,  # a person's
        "clicks": 0,  # TestClient's User-Agent ("testclient") is nobody's browser
        "all_opens": 2,
        "all_clicks": 1,
        "by_verdict": {"click:unknown": 1, "open:human": 2},
    }
    assert (found["opened"], found["state"]) == (True, "opened")
    assert found["campaign"] == "december"
    assert found["sent_at"] == "2026-12-01T09:30:00Z"
    assert [h["kind"] for h in found["hits"]] == ["open", "open", "click"]
    hit_time = datetime.fromisoformat(found["hits"][0]["time"])
    assert abs((datetime.now(UTC) - hit_time).total_seconds()) < 60


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"to": []}, 422, "to:"),
        ({"to": "a@example.test"}, 422, "to:"),
        ({"to": ["not an address"]}, 422, "to[0]"),
        ({"to": ["a@example.test\r\nBcc: x@example.test"]}, 422, "to[0]"),
        ({"from": None}, 422, "from"),
        ({"html": 3}, 422, "html"),
        ({"subject": None}, 422, "subject"),
        ({"sent_at": "yesterday"}, 422, "sent_at"),
        ({"sent_at": "2026-12-01T09:30:00"}, 422, "time zone"),
        ({"campaign": "x" * 201}, 422, "campaign"),
    ],
)
def test_invalid_input_gets_a_4xx_that_says_what_is_wrong(
    client: TestClient, alice: Persona, change: dict[str, object], status: int, message: str
) -> None:
    body = {"from": alice.email, "to": ["a@example.test"], "subject": "s", "html": "<p>x</p>"}
    response = client.post("/api/v1/messages", json={**body, **change}, headers=alice.auth)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_a_body_that_is_not_json_is_refused(client: TestClient, alice: Persona) -> None:
    response = client.post("/api/v1/messages", content=b"{nope", headers=alice.auth)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_an_oversized_body_is_refused(client: TestClient, alice: Persona) -> None:
    response = client.post("/api/v1/messages", content=b"x" * (MAX_BODY + 1), headers=alice.auth)
    assert response.status_code == 413


def test_an_unknown_message_is_404(client: TestClient, alice: Persona) -> None:
    response = client.get("/api/v1/messages/AAAAAAAAAAAAAAAA", headers=alice.auth)
    assert response.status_code == 404


def test_the_senders_own_view_leaves_a_message_not_opened(
    client: TestClient, alice: Persona
) -> None:
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"X-Test-Peer": "192.0.2.25"})
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert (found["state"], found["opened"]) == ("not_opened", False)
    assert found["hits"][0]["verdict"] == "self"
