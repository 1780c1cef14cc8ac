import json
from email import message_from_bytes
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.cli import app
from tests.conftest import Persona, path_of

CORPUS = Path(__file__).parent / "corpus" / "mime"
runner = CliRunner()


def test_it_writes_one_registered_copy_per_recipient_without_bcc(
    client: TestClient, alice: Persona, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            *("instrument", str(CORPUS / "bcc-header.eml"), "--out", str(out), "--json"),
            *("--user", alice.email, "--campaign", "dinner"),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    messages = json.loads(result.stdout)["messages"]
    assert [m["recipient"] for m in messages] == [
        "olivia@example.com",
        "peggy@example.com",
        "rupert@example.net",
        "sybil@example.net",
        "trent@example.org",
    ]
    pixels = set()
    for m in messages:
        copy = Path(m["file"]).read_bytes()
        assert b"Bcc:" not in copy
        parsed = message_from_bytes(copy)
        html = parsed.get_payload(decode=True).decode()
        pixel = html.split('<img src="')[1].split('"')[0]
        pixels.add(pixel)
        assert "https://dine.example.com" not in html
        found = client.get(f"/api/v1/messages/{m['id']}", headers=alice.auth).json()
        assert found["campaign"] == "dinner"
        assert found["from"] == "niaj@example.org"
        assert found["links"] == ["https://dine.example.com/r/8812"]
    assert len(pixels) == 5

    client.get(path_of(pixels.pop()), headers={"User-Agent": "Thunderbird/115.5.0"})
    stats = client.get("/api/v1/campaigns/dinner/stats", headers=alice.auth).json()
    assert (stats["delivered"], stats["naive_unique_opens"]) == (5, 1)


def test_a_message_that_cannot_be_instrumented_is_refused_with_the_reason(
    alice: Persona, env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.eml"
    broken.write_bytes(
        b"To: a@example.test\nContent-Type: multipart/alternative\n\nno boundary here\n"
    )
    args = ["instrument", str(broken), "--out", str(tmp_path), "--user", alice.email]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 1
    assert "cannot be instrumented" in result.output
    assert "boundary" in result.output
