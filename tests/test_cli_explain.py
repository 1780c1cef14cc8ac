"""``mailbeacon explain`` and ``mailbeacon stats``: why each hit was counted, and the rates."""

from __future__ import annotations

import json

from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.cli import app
from tests.conftest import Persona, path_of, send

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # a terminal wide enough that the table's cells do not wrap
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"


def test_explain_shows_every_hit_with_its_verdict_and_reasons(
    client: TestClient, alice: Persona, env: dict[str, str]
) -> None:
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": OUTLOOK})
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": "curl/8.5.0"})
    result = runner.invoke(
        app, ["explain", message["id"], "--user", alice.email], env={**env, **WIDE}
    )
    assert result.exit_code == 0, result.output
    assert "opened" in result.output
    assert "mail_client" in result.output
    assert "http_library" in result.output
    assert "Outlook" in result.output


def test_explain_as_json_is_the_apis_message(
    client: TestClient, alice: Persona, env: dict[str, str]
) -> None:
    message = send(client, alice)
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": OUTLOOK})
    result = runner.invoke(
        app, ["explain", message["id"], "--user", alice.email, "--json"], env=env
    )
    found = json.loads(result.stdout)
    api = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()
    assert found == api


def test_explain_prints_what_a_request_carried_as_text_never_as_markup(
    client: TestClient, alice: Persona, env: dict[str, str]
) -> None:
    message = send(client, alice, subject="[bold]Sale[/bold]")
    hostile = "[red]Outlook[/red] [link=javascript:alert(1)]x[/link] \u202egnp.exe"
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": hostile.encode()})
    result = runner.invoke(app, ["explain", message["id"], "--user", alice.email], env=env)
    assert result.exit_code == 0, result.output
    assert "[bold]Sale[/bold]" in result.output


def test_explain_an_unknown_message_says_so(alice: Persona, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["explain", "AAAAAAAAAAAAAAAA", "--user", alice.email], env=env)
    assert result.exit_code == 1
    assert "no message 'AAAAAAAAAAAAAAAA'" in result.output


def test_stats_for_one_recipient_covers_all_their_mail(
    client: TestClient, alice: Persona, env: dict[str, str]
) -> None:
    first = send(client, alice, campaign="spring")
    send(client, alice, campaign="summer")
    client.get(path_of(first["pixel_url"]), headers={"User-Agent": OUTLOOK})
    result = runner.invoke(
        app,
        ["stats", "--recipient", "reader@example.test", "--user", alice.email, "--json"],
        env=env,
    )
    stats = json.loads(result.stdout)
    assert (stats["delivered"], stats["unique_opens"], stats["observed_open_rate"]) == (2, 1, 0.5)
    assert "campaign" not in stats


def test_stats_prints_the_rates_and_the_assumptions(
    client: TestClient, alice: Persona, env: dict[str, str]
) -> None:
    message = send(client, alice, campaign="spring")
    client.get(path_of(message["pixel_url"]), headers={"User-Agent": OUTLOOK})
    result = runner.invoke(app, ["stats", "--user", alice.email], env=env)
    assert result.exit_code == 0, result.output
    assert "spring" in result.output
    assert "100.0%" in result.output
    assert "Apple Mail Privacy Protection" in result.output  # an assumption, in words
