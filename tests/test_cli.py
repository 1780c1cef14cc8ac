import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.cli import app
from mailbeacon.cli.common import console
from tests.conftest import Persona, path_of, send

runner = CliRunner()


def test_users_add_prints_the_key_as_json(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["users", "add", "carol@example.test", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["email"] == "carol@example.test"
    assert data["api_key"].startswith("mb_")


def test_users_add_refuses_a_duplicate(env: dict[str, str]) -> None:
    assert runner.invoke(app, ["users", "add", "carol@example.test"], env=env).exit_code == 0
    result = runner.invoke(app, ["users", "add", "carol@example.test"], env=env)
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_a_short_secret_refuses_to_start_with_a_clear_message(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["stats"], env={**env, "MAILBEACON_SECRET": "short"})
    assert result.exit_code == 1
    assert "too short" in result.output


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    commands = ("serve", "users", "instrument", "send", "replay", "stats", "secret", "signatures")
    for command in commands:
        assert command in result.output


def test_the_readme_documents_every_command() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for command in (
        "serve",
        "users add",
        "users password",
        "users track",
        "instrument",
        "send",
        "replay",
        "stats",
        "secret rotate",
        "signatures update",
        "signatures status",
    ):
        assert f"`mailbeacon {command}" in readme, command


OUTLOOK_IOS = "Outlook-iOS/709.2226530.prod.iphone (3.24.1)"


def test_stats_prints_campaign_figures_as_json(
    client: TestClient, alice: Persona, env: dict[str, str]
) -> None:
    opened = send(client, alice, campaign="spring")
    send(client, alice, campaign="spring")
    client.get(path_of(opened["pixel_url"]), headers={"User-Agent": OUTLOOK_IOS})
    result = runner.invoke(
        app, ["stats", "--campaign", "spring", "--user", alice.email, "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["delivered"], stats["unique_opens"], stats["naive_open_rate"]) == (2, 1, 0.5)
    table = runner.invoke(app, ["stats", "--user", alice.email], env=env)
    assert "spring" in table.output
    assert "50.0%" in table.output


def test_stats_for_an_unknown_campaign_says_so(alice: Persona, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["stats", "--campaign", "nope", "--user", alice.email], env=env)
    assert result.exit_code == 1
    assert "no messages in campaign 'nope'" in result.output


def test_printed_text_keeps_what_looks_like_emoji_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """A certificate fingerprint is hex pairs between colons: ":AB:" must not become an emoji."""
    console.print("SHA-256 F1:AB:B1:93 :x:", highlight=False)
    assert "F1:AB:B1:93 :x:" in capsys.readouterr().out
