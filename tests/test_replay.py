import json
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.cli import app
from tests.conftest import Persona, send

runner = CliRunner()


def line(url: str, **fields: object) -> str:
    hit = {
        "time": "2026-11-30T08:15:00Z",
        "method": "GET",
        "url": url,
        "ip": "198.51.100.4",
        "headers": {"User-Agent": "Mozilla/5.0 (iPhone) Mobile/15E148"},
    }
    return json.dumps({**hit, **fields})


def test_replayed_hits_are_recorded_as_if_received_at_their_time(
    client: TestClient, alice: Persona, env: dict[str, str], tmp_path: Path
) -> None:
    message = send(client, alice)
    hits = tmp_path / "hits.jsonl"
    hits.write_text(
        line(message["pixel_url"])
        + "\n"
        + line(
            message["links"][0]["tracked_url"],
            time="2026-11-30T08:16:00+01:00",
            ip="::ffff:192.0.2.1",
        )
        + "\n"
    )
    result = runner.invoke(app, ["replay", str(hits), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recorded"] == 2
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert [(h["kind"], h["time"], h["ip"]) for h in found["hits"]] == [
        ("open", "2026-11-30T08:15:00Z", "198.51.100.4"),
        ("click", "2026-11-30T07:16:00Z", "192.0.2.1"),
    ]
    assert found["hits"][0]["user_agent"] == "Mozilla/5.0 (iPhone) Mobile/15E148"


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_recorded(
    client: TestClient, alice: Persona, env: dict[str, str], tmp_path: Path
) -> None:
    message = send(client, alice)
    pixel = message["pixel_url"]
    forged = pixel[:-8] + ("AAAA" if pixel[-8:-4] != "AAAA" else "BBBB") + ".gif"
    lines = [
        line(pixel),  # 1 good
        "{not json",  # 2
        line(forged),  # 3
        line("https://t.example.test/elsewhere"),  # 4
        line(pixel, ip="not-an-ip"),  # 5
        line(pixel, time="yesterday"),  # 6
        "",  # 7 blank: skipped silently
        line(pixel, method="POST"),  # 8
        line(pixel, headers={"User-Agent": 3}),  # 9
        line(pixel),  # 10 good
    ]
    hits = tmp_path / "hits.jsonl"
    hits.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["replay", str(hits), "--json"], env=env)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["recorded"] == 2
    assert report["bad"] == 7
    assert [b["line"] for b in report["bad_lines"]] == [2, 3, 4, 5, 6, 8, 9]
    assert "not genuine" in report["bad_lines"][1]["error"]
    found = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found["counts"]["opens"] == 2


def test_replay_prints_bad_lines_for_people(
    client: TestClient, alice: Persona, env: dict[str, str], tmp_path: Path
) -> None:
    hits = tmp_path / "hits.jsonl"
    hits.write_text("{nope\n")
    result = runner.invoke(app, ["replay", str(hits)], env=env)
    assert result.exit_code == 1
    assert "hits.jsonl:1: not JSON" in result.output
    assert "0 hits recorded (0 earlier verdicts revised), 1 bad lines" in result.output
