"""`mailbeacon send`: a campaign from a template and a CSV list, one tracked copy a recipient."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon.accounts import now_us
from mailbeacon.cli import app
from mailbeacon.relay.upstream import Upstream
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.store.db import Database
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import PEER, Persona, path_of
from tests.support.upstream import Upstream as UpstreamServer

runner = CliRunner()

HTML = (
    "<html><body><p>Hello {{ name }}, your {{ plan }} plan is ready.</p>"
    '<a href="https://shop.example.test/plans/{{ plan }}">See it</a> '
    '<a href="https://shop.example.test/help">Help</a>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
TEXT = "Hello {{ name }},\nyour {{ plan }} plan is ready.\nUnsubscribe: {{ unsubscribe_url }}\n"
PEOPLE = [
    {"email": "ann@example.test", "name": "Ann Østergaard", "plan": "gold"},
    {"email": "bob@example.test", "name": "<b>Tom & Jerry</b>", "plan": "silver"},
    {"email": "cy@example.test", "name": "Cy", "plan": "bronze"},
]


def write_list(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def campaign_args(
    tmp_path: Path,
    rows: list[dict[str, str]] | Path = PEOPLE,
    *,
    name: str = "spring",
    html: str = HTML,
    text: str | None = TEXT,
    subject: str = "{{ name }}: your {{ plan }} plan — ready",
) -> list[str]:
    template = tmp_path / "campaign.html"
    template.write_text(html, encoding="utf-8")
    listing = rows if isinstance(rows, Path) else write_list(tmp_path / "list.csv", rows)
    args = ["send", "--campaign", name, "--from", "Shop Café <news@example.test>"]
    args += ["--subject", subject, "--template", str(template), "--to", str(listing)]
    if text is not None:
        (tmp_path / "campaign.txt").write_text(text, encoding="utf-8")
        args += ["--text", str(tmp_path / "campaign.txt")]
    return args


def send(env: dict[str, str], persona: Persona, args: list[str]) -> Result:
    return runner.invoke(app, [*args, "--user", persona.email, "--json"], env=env)


def summary(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def queued(db: Database) -> list[tuple[str, str, EmailMessage]]:
    """Each queued copy: recipient, message id, and the message as it will go upstream."""
    rows = db.read(
        lambda conn: conn.execute("SELECT rcpt_to, message_id, data FROM outbound ORDER BY id")
    )
    return [
        (rcpt, message_id, message_from_bytes(bytes(data), policy=policy.default))  # type: ignore[misc]
        for rcpt, message_id, data in rows
    ]


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n")


def test_it_queues_a_personal_tracked_copy_for_each_recipient(
    client: TestClient, alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    result = send(env, alice, campaign_args(tmp_path))
    assert result.exit_code == 0, result.output
    assert summary(result) | {"suppressed_recipients": [], "bad_rows": []} == {
        "campaign": "spring", "rows": 3, "queued": 3, "already_sent": 0, "suppressed": 0,
        "suppressed_recipients": [], "bad": 0, "bad_rows": [], "stopped": None,
        "interrupted": False,
    }  # fmt: skip
    copies = queued(db)
    assert [rcpt for rcpt, _, _ in copies] == [p["email"] for p in PEOPLE]
    pixels = set()
    for (rcpt, message_id, message), person in zip(copies, PEOPLE, strict=True):
        assert message["From"] == "Shop Café <news@example.test>"
        assert message["To"].addresses[0].addr_spec == rcpt
        assert message["To"].addresses[0].display_name == person["name"]
        assert message["Subject"] == f"{person['name']}: your {person['plan']} plan — ready"
        assert message["Message-ID"].endswith("@example.test>")
        assert message["Date"]
        assert message.get_content_type() == "multipart/alternative"
        html, text = body(message, "html"), body(message, "plain")
        assert f"Hello {person['name']},\nyour {person['plan']} plan" in text
        assert "https://shop.example.test" not in html  # every web link is a redirect
        pixel = html.split('<img src="')[1].split('"')[0]
        assert pixel.startswith("https://t.example.test/o/")
        pixels.add(pixel)
        found = client.get(f"/api/v1/messages/{message_id}", headers=alice.auth).json()
        assert found["recipient"] == rcpt
        assert found["campaign"] == "spring"
        assert found["from"] == "news@example.test"
        assert found["links"] == [
            f"https://shop.example.test/plans/{person['plan']}",
            "https://shop.example.test/help",
        ]
        redirect = html.split('<a href="')[1].split('"')[0]
        answer = client.get(path_of(redirect), follow_redirects=False)
        assert answer.headers["location"] == f"https://shop.example.test/plans/{person['plan']}"
    assert len(pixels) == 3
    stats = client.get("/api/v1/campaigns/spring/stats", headers=alice.auth).json()
    assert stats["delivered"] == 0  # queued: none accepted upstream yet


def test_it_escapes_variables_in_the_html_body_and_nowhere_else(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    assert send(env, alice, campaign_args(tmp_path)).exit_code == 0
    [_, (_, _, message), _] = queued(db)
    assert "Hello &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;, your silver plan" in body(message, "html")
    assert "<b>Tom" not in body(message, "html")
    assert "Hello <b>Tom & Jerry</b>," in body(message, "plain")
    assert message["Subject"] == "<b>Tom & Jerry</b>: your silver plan — ready"


def test_it_sends_the_html_alone_without_a_text_template(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    assert send(env, alice, campaign_args(tmp_path, text=None)).exit_code == 0
    message = queued(db)[0][2]
    assert message.get_content_type() == "text/html"
    assert "Hello Ann Østergaard" in message.get_content()


def test_it_adds_one_click_unsubscribe_headers_whose_link_is_no_click_redirect(
    client: TestClient, alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    assert send(env, alice, campaign_args(tmp_path)).exit_code == 0
    for _, message_id, message in queued(db):
        header = message["List-Unsubscribe"]
        assert header.startswith("<https://t.example.test/u/")
        assert header.endswith(">")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = header[1:-1]
        assert f'<a href="{url}">Unsubscribe</a>' in body(message, "html")
        assert f"Unsubscribe: {url}\n" in body(message, "plain")
        found = client.get(f"/api/v1/messages/{message_id}", headers=alice.auth).json()
        assert not any("/u/" in link for link in found["links"])


def test_the_sandbox_refuses_pythons_internals(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    html = "<p>{{ ''.__class__.__mro__[1].__subclasses__() }}</p>"
    result = send(env, alice, campaign_args(tmp_path, html=html))
    assert result.exit_code == 1
    assert "the HTML template: refused by the sandbox" in result.output
    assert "__class__" in result.output
    assert queued(db) == []


def test_a_variable_missing_from_the_list_stops_the_send_naming_it(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    result = send(env, alice, campaign_args(tmp_path, subject="Hi {{ first_name }}"))
    assert result.exit_code == 1
    assert "line 2: the subject: 'first_name' is undefined" in result.output
    assert summary(result)["stopped"]["line"] == 2
    assert queued(db) == []


def test_a_template_that_does_not_compile_says_where(
    alice: Persona, env: dict[str, str], tmp_path: Path
) -> None:
    result = send(env, alice, campaign_args(tmp_path, html="<p>\n{% if plan %}gold</p>"))
    assert result.exit_code == 1
    assert "the HTML template, line 2:" in result.output


def test_a_list_without_an_email_column_is_refused(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    rows = [{"mail": p["email"], "name": p["name"], "plan": p["plan"]} for p in PEOPLE]
    result = send(env, alice, campaign_args(tmp_path, rows))
    assert result.exit_code == 1
    assert "line 1: no `email` column in the header row" in result.output
    assert "'mail'" in result.output
    assert queued(db) == []


def test_bad_rows_are_reported_by_line_and_skipped(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    listing = tmp_path / "bad.csv"
    listing.write_text(
        "email,name,plan\n"
        "ann@example.test,Ann,gold\n"
        "not an address,X,x\n"
        'dee@example.test,"Dee\nwith a line break",gold\n'
        "short@example.test,Short\n"
        "\n"
        "ANN@example.test,Ann again,gold\n"
        "eve@example.test\r\n,Eve,gold\n",
        encoding="utf-8",
    )
    result = send(env, alice, campaign_args(tmp_path, listing))
    assert result.exit_code == 1  # the good rows are queued all the same
    found = summary(result)
    assert found["bad_rows"] == [
        {"line": 3, "error": "'not an address' is not a plain email address (user@example.com)"},
        {"line": 6, "error": "2 fields where the header has 3"},
        {"line": 8, "error": "ANN@example.test is already on line 2"},
        {"line": 9, "error": "1 fields where the header has 3"},
        {"line": 10, "error": "no address in the `email` column"},
    ]
    assert (found["queued"], found["bad"]) == (2, 5)
    copies = queued(db)
    assert [rcpt for rcpt, _, _ in copies] == ["ann@example.test", "dee@example.test"]
    assert copies[1][2]["To"].addresses[0].display_name == "Dee with a line break"


def test_a_send_stopped_by_a_row_goes_on_from_that_row_and_sends_nobody_twice(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    rows = [{"email": f"r{i}@example.test", "share": str(i % 5)} for i in range(1, 9)]
    html = "<p>{{ 100 // share|int }}%</p>"
    args = campaign_args(tmp_path, rows, html=html, text=None, subject="Your share")
    first = send(env, alice, args)
    assert first.exit_code == 1
    assert "line 6: the HTML template: ZeroDivisionError" in first.output  # r5: share 0
    assert "run the same command again" in first.output
    assert summary(first)["queued"] == 4
    rows[4]["share"] = "1"
    write_list(tmp_path / "list.csv", rows)
    again = send(env, alice, args)
    assert again.exit_code == 0, again.output
    assert (summary(again)["queued"], summary(again)["already_sent"]) == (4, 4)
    assert sorted(rcpt for rcpt, _, _ in queued(db)) == sorted(r["email"] for r in rows)
    assert send(env, alice, args).exit_code == 0
    assert len(queued(db)) == 8


def _count(db: Database, table: str) -> int:
    row = db.read(lambda conn: conn.one(f"SELECT COUNT(*) FROM {table}"))
    return int(row[0]) if row else 0


def _descendants(pid: int) -> set[int]:
    """The processes ``pid`` started, and theirs (Linux)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return set()
    return {int(c) for c in children} | {d for c in children for d in _descendants(int(c))}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


# 300 recipients are made in worker processes, 60 in the sending process.
LOADS = ((60, "40/s"), (300, "100/s"))


@pytest.mark.parametrize(
    "run",
    [
        pytest.param((sig, n, rate), id=f"{sig.name}-{n}")
        for sig in (signal.SIGINT, signal.SIGKILL)
        for n, rate in LOADS
    ],
)
def test_an_interrupted_send_run_again_sends_everyone_exactly_once(
    alice: Persona,
    env: dict[str, str],
    db: Database,
    tmp_path: Path,
    run: tuple[signal.Signals, int, str],
) -> None:
    sig, recipients, rate = run
    rows = [{"email": f"r{i}@example.test", "name": f"R{i}"} for i in range(recipients)]
    args = campaign_args(tmp_path, rows, html="<p>{{ name }}</p>", text=None, subject="Hi")
    command = [sys.executable, "-m", "mailbeacon", *args, "--user", alice.email, "--rate", rate]
    process = subprocess.Popen(
        command,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MAILBEACON_")}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while _count(db, "outbound") < 10 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    helpers = _descendants(process.pid)
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    assert process.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    assert b"Traceback" not in err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in helpers)  # no worker outlives the send
    first = _count(db, "outbound")
    assert 10 <= first < recipients
    assert _count(db, "campaign_sends") == first == _count(db, "messages")
    result = send(env, alice, args)
    assert result.exit_code == 0, result.output
    assert summary(result)["already_sent"] == first
    assert summary(result)["queued"] == recipients - first
    assert Counter(rcpt for rcpt, _, _ in queued(db)) == Counter(r["email"] for r in rows)


def test_it_hands_copies_to_the_queue_no_faster_than_the_rate(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    rows = [{"email": f"r{i}@example.test"} for i in range(10)]
    args = campaign_args(tmp_path, rows, html="<p>hi</p>", text=None, subject="Hi")
    started = time.monotonic()
    assert send(env, alice, [*args, "--rate", "20/s"]).exit_code == 0
    assert time.monotonic() - started >= 0.25  # two batches of five, a quarter second apart
    assert len(queued(db)) == 10


@pytest.mark.parametrize("rate", ["0", "fast", "10/d", "-1/s"])
def test_a_rate_that_is_not_a_rate_is_refused(
    alice: Persona, env: dict[str, str], tmp_path: Path, rate: str
) -> None:
    result = send(env, alice, [*campaign_args(tmp_path), "--rate", rate])
    assert result.exit_code == 1
    assert "--rate: expected a number" in result.output


def _unsubscribe_url(message: EmailMessage) -> str:
    return str(message["List-Unsubscribe"])[1:-1]


def test_unsubscribed_and_bounced_recipients_are_skipped_by_the_next_send(
    client: TestClient, alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    assert send(env, alice, campaign_args(tmp_path, name="spring")).exit_code == 0
    ann = queued(db)[0][2]
    answer = client.post(
        path_of(_unsubscribe_url(ann)),
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    db.write(queries.add_suppression, alice.id, "BOB@example.test", "bounced", None, now=now_us())

    summer = send(env, alice, campaign_args(tmp_path, name="summer"))
    assert summer.exit_code == 0, summer.output
    assert summary(summer)["queued"] == 1
    assert summary(summer)["suppressed_recipients"] == [
        {"address": "ann@example.test", "reason": "unsubscribed"},
        {"address": "bob@example.test", "reason": "bounced"},
    ]
    assert [rcpt for rcpt, _, _ in queued(db)][3:] == ["cy@example.test"]

    # Lifting Ann's suppression lets a run of the same campaign send to her, and only her.
    lifted = client.delete("/api/v1/suppressions/ann@example.test", headers=alice.auth)
    assert lifted.status_code == 204
    again = send(env, alice, campaign_args(tmp_path, name="summer"))
    assert (summary(again)["queued"], summary(again)["already_sent"]) == (1, 1)
    assert summary(again)["suppressed"] == 1
    assert [rcpt for rcpt, _, _ in queued(db)][3:] == ["cy@example.test", "ann@example.test"]


def test_a_suppression_shows_in_the_text_summary(
    alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    db.write(queries.add_suppression, alice.id, "cy@example.test", "bounced", None, now=now_us())
    result = runner.invoke(app, [*campaign_args(tmp_path), "--user", alice.email], env=env)
    assert result.exit_code == 0, result.output
    assert "suppressed: cy@example.test (bounced)" in result.output
    assert "spring: 2 queued, 1 suppressed, 0 already sent, 0 bad rows (3 rows)" in result.output
    assert "mailbeacon serve --upstream URL" in result.output


def test_serve_delivers_a_campaign_to_the_upstream_server(
    settings: Settings, alice: Persona, env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    """End to end: `send` queues in the store, `serve`'s deliverer hands the copies upstream,
    and a recipient's mail client unsubscribes with the header of the mail it received."""
    with UpstreamServer(tmp_path) as upstream:
        services = Services.open(
            dataclasses.replace(settings, upstream=Upstream.parse(upstream.url))
        )
        services.deliverer.poll = 0.1  # `send` runs apart from `serve`: the deliverer polls
        with TestClient(App(services), base_url="https://t.example.test", client=PEER) as client:
            assert send(env, alice, campaign_args(tmp_path)).exit_code == 0
            upstream.wait_for(3, timeout=20)
            rows = db.read(lambda conn: conn.execute("SELECT rcpt_to, data FROM outbound"))
            sent = {rcpt: bytes(data) for rcpt, data in rows}
            deliveries = upstream.deliveries()
            assert {d.rcpt_tos[0]: d.data for d in deliveries} == sent  # byte for byte
            assert {d.mail_from for d in deliveries} == {"news@example.test"}
            received = message_from_bytes(deliveries[0].data, policy=policy.default)
            answer = client.post(
                path_of(str(received["List-Unsubscribe"])[1:-1]),
                content="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 200
            listed = client.get("/api/v1/suppressions", headers=alice.auth).json()
            assert [s["reason"] for s in listed["suppressions"]] == ["unsubscribed"]
