import json

from typer.testing import CliRunner

from mailbeacon.cli import app

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
    for command in ("serve", "users", "instrument", "replay", "stats", "secret"):
        assert command in result.output
