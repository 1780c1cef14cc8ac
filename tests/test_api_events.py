from starlette.testclient import TestClient

from tests.conftest import Persona, path_of, send


def test_events_come_oldest_first_with_a_cursor(client: TestClient, alice: Persona) -> None:
    message = send(client, alice)
    for _ in range(5):
        client.get(path_of(message["pixel_url"]))
    client.get(path_of(message["links"][0]["tracked_url"]), follow_redirects=False)

    first = client.get("/api/v1/events?limit=4", headers=alice.auth).json()
    assert [e["kind"] for e in first["events"]] == ["open"] * 4
    rest = client.get(f"/api/v1/events?after={first['next']}", headers=alice.auth).json()
    assert [e["kind"] for e in rest["events"]] == ["open", "click"]
    ids = [e["id"] for e in first["events"] + rest["events"]]
    assert ids == sorted(ids)
    click = rest["events"][-1]
    assert click["url"] == "https://shop.example.test/sale?a=1&b=2"
    assert set(click) >= {
        "id",
        "message_id",
        "time",
        "kind",
        "verdict",
        "agent",
        "confidence",
        "reasons",
        "ip",
        "user_agent",
        "url",
    }
    empty = client.get(f"/api/v1/events?after={rest['next']}", headers=alice.auth).json()
    assert empty == {"events": [], "next": rest["next"]}


def test_a_bad_cursor_is_a_400(client: TestClient, alice: Persona) -> None:
    response = client.get("/api/v1/events?after=-3", headers=alice.auth)
    assert response.status_code == 400
    assert "after" in response.json()["error"]


THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


def test_campaign_stats_count_people_once_and_robots_only_in_the_naive_rate(
    client: TestClient, alice: Persona
) -> None:
    opened = send(client, alice, campaign="launch")
    clicked = send(client, alice, campaign="launch")
    scanned = send(client, alice, campaign="launch")
    send(client, alice, campaign="other")
    client.get(path_of(opened["pixel_url"]), headers={"User-Agent": THUNDERBIRD})
    client.get(path_of(opened["pixel_url"]), headers={"User-Agent": THUNDERBIRD})
    link = path_of(clicked["links"][0]["tracked_url"])
    client.get(link, headers={"User-Agent": FIREFOX}, follow_redirects=False)
    client.get(path_of(scanned["pixel_url"]), headers={"User-Agent": "curl/8.5.0"})
    stats = client.get("/api/v1/campaigns/launch/stats", headers=alice.auth).json()
    assert stats["delivered"] == 3
    assert stats["unique_opens"] == 1
    assert stats["naive_unique_opens"] == 2
    assert stats["unique_clicks"] == 1
    assert stats["naive_open_rate"] == round(2 / 3, 4)
    assert stats["observed_open_rate"] == round(1 / 3, 4)
    assert stats["inferred_open_rate"] == round(2 / 3, 4)  # the click implies an open
    assert stats["click_rate"] == round(1 / 3, 4)
    low, high = stats["estimated_open_rate_interval"]
    assert stats["inferred_open_rate"] <= low <= stats["estimated_open_rate"] <= high <= 1
    assert stats["hits"]["by_verdict"] == {"open:human": 2, "click:human": 1, "open:machine": 1}
    assert stats["clients"] == [
        {"client": "Thunderbird", "type": "desktop", "os": "Windows 10", "recipients": 1}
    ]
    assert stats["assumptions"]
