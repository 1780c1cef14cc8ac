from starlette.testclient import TestClient

from mailbeacon.store.db import Database
from tests.conftest import Persona, path_of, send


def test_it_redirects_to_the_registered_url(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    link = message["links"][0]
    assert link["url"] == "https://shop.example.test/sale?a=1&b=2"
    response = client.get(path_of(link["tracked_url"]), follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example.test/sale?a=1&b=2"
    assert "no-store" in response.headers["cache-control"]


def test_it_records_the_click_with_its_url(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    client.get(path_of(message["links"][1]["tracked_url"]), follow_redirects=False)
    hits = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()["hits"]
    assert [(h["kind"], h["url"]) for h in hits] == [("click", "https://example.test/blog")]


def test_no_parameter_can_choose_the_destination(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    path = path_of(message["links"][0]["tracked_url"])
    for suffix in ("?url=https://evil.test", "?next=//evil.test", "/https://evil.test"):
        response = client.get(path + suffix, follow_redirects=False)
        assert response.headers.get("location", "") in ("", message["links"][0]["url"]), suffix


def test_a_forged_or_unknown_link_is_404_and_records_nothing(
    client: TestClient, alice: Persona, db: Database
) -> None:
    message = send(client, alice)
    pixel_token = path_of(message["pixel_url"])[3:-4]
    token = path_of(message["links"][0]["tracked_url"])[3:]
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for path in (f"/c/{forged}", f"/c/{pixel_token}", "/c/", "/c/x"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 404, path
        assert "location" not in response.headers
    assert db.read(lambda conn: conn.one("SELECT COUNT(*) FROM hits")) == (0,)


def test_mailto_links_are_not_tracked(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    assert [link["url"] for link in message["links"]] == [
        "https://shop.example.test/sale?a=1&b=2",
        "https://example.test/blog",
    ]
    assert 'href="mailto:help@example.test"' in message["html"]


def test_non_ascii_destinations_are_percent_encoded(client: TestClient, alice: Persona) -> None:
    message = send(client, alice, html='<a href="https://example.test/caf\u00e9?q=\u00fc">x</a>')
    response = client.get(path_of(message["links"][0]["tracked_url"]), follow_redirects=False)
    assert response.headers["location"] == "https://example.test/caf%C3%A9?q=%C3%BC"
