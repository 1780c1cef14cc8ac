"""`mailbeacon send` of a campaign timed, then its delivery to a loopback SMTP server
(`bench/run.py campaign` runs it alone)."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from processes import BenchError, Processes, wait_until_up
from servers import MAILBEACON, add_user, flags, sqlite_db
from settings import UPSTREAM
from tables import table
from tests.support.server import free_port
from tests.support.upstream import Upstream as UpstreamServer

CAMPAIGN_LINKS = 300  # link tags in the template, to 150 distinct URLs
TARGET_CAMPAIGN_RATE = 200  # messages/s instrumented and queued
DELIVERY_TIMEOUT = 600  # seconds for `serve` to hand the whole campaign upstream


@dataclass(frozen=True)
class Campaign:
    recipients: int
    html_bytes: int  # the template
    queued: int  # what `mailbeacon send` reports
    stored: int  # rows in `outbound` afterwards
    seconds: float  # wall clock of the whole command
    delivered: int  # accepted by the loopback upstream
    delivery_seconds: float  # from `serve` starting to the last one accepted

    @property
    def rate(self) -> float:
        return self.queued / self.seconds

    @property
    def delivery_rate(self) -> float:
        return self.delivered / self.delivery_seconds if self.delivery_seconds else 0.0

    @property
    def complete(self) -> bool:
        return self.queued == self.stored == self.recipients == self.delivered


def write_campaign(workdir: Path, recipients: int) -> tuple[Path, Path, int]:
    """A ~100 KB newsletter (a personal greeting, CAMPAIGN_LINKS links, an unsubscribe link)
    and a list of ``recipients``; the template's size."""
    rows = ["<tr><td><p>Dear {{ name }}, this week in {{ city }}:</p></td></tr>"]
    for i in range(CAMPAIGN_LINKS):
        rows.append(
            f'<tr><td class="item" style="padding:8px;font:14px/1.4 Arial,sans-serif">'
            f"<h3>Offer {i}</h3><p>{'A few words about this offer, and more. ' * 3}"
            f'</p><a href="https://shop.example.test/item/{i % 150}?utm_source=news&amp;'
            f'utm_medium=email&amp;utm_campaign=bench">See offer {i}</a></td></tr>\n'
        )
    html = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>News</title>'
        '<style>td{color:#333}</style></head><body><table width="100%">'
        + "".join(rows)
        + '<tr><td><a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr></table></body></html>'
    )
    workdir.mkdir(parents=True, exist_ok=True)
    template, listing = workdir / "campaign.html", workdir / "list.csv"
    template.write_text(html, encoding="utf-8")
    with listing.open("w", encoding="utf-8") as out:
        out.write("email,name,city\n")
        for i in range(recipients):
            out.write(f"reader{i}@example.test,Reader {i},City {i % 50}\n")
    return template, listing, len(html.encode())


def _count_outbound(db: str, state: str | None = None) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        if state is None:
            row = conn.execute("SELECT COUNT(*) FROM outbound").fetchone()
        else:
            row = conn.execute("SELECT COUNT(*) FROM outbound WHERE state = ?", (state,)).fetchone()
    return int(row[0]) if row else 0


def campaign(procs: Processes, data: Path, recipients: int) -> Campaign:
    """Time `mailbeacon send` of a campaign on SQLite, then `serve` handing it to a loopback
    SMTP server (tests/support/upstream.py: aiosmtpd, every message written to a Maildir)."""
    add_user(procs, data, None)
    template, listing, html_bytes = write_campaign(data / "campaign", recipients)
    args = [*MAILBEACON, "send", "--campaign", "bench", "--from", "News <news@example.test>"]
    args += ["--subject", "{{ name }}, this week in {{ city }}", "--template", str(template)]
    args += ["--to", str(listing), "--user", "bench@example.test", "--json", *flags(data, None)]
    started = time.monotonic()
    done = procs.run(args, 3600)
    seconds = time.monotonic() - started
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchError(f"`mailbeacon send` failed ({done.returncode}): {done.stderr}") from exc
    db = sqlite_db(data)
    # Two processes: one would take at most ~160 copies of 158 KB a second here, less than
    # what is being measured. BENCH_UPSTREAM names another server instead (a local Postfix).
    with contextlib.ExitStack() as stack:
        url = UPSTREAM or stack.enter_context(UpstreamServer(data, processes=2)).url
        port = free_port()
        log = data / "serve-upstream.log"
        serve = [*MAILBEACON, "serve", "--listen", f"127.0.0.1:{port}", "--upstream", url]
        started = time.monotonic()
        child = procs.start([*serve, *flags(data, None)], log)
        try:
            wait_until_up("mailbeacon serve", f"http://127.0.0.1:{port}/healthz", child, log)
            deadline = started + DELIVERY_TIMEOUT
            while (delivered := _count_outbound(db, "sent")) < report["queued"]:
                if time.monotonic() > deadline or child.poll() is not None:
                    break
                time.sleep(0.05)
            delivery_seconds = time.monotonic() - started
        finally:
            procs.stop(child, signal.SIGINT)
    return Campaign(
        recipients, html_bytes, report["queued"], _count_outbound(db), seconds, delivered,
        delivery_seconds,
    )  # fmt: skip


def campaign_report(run: Campaign) -> list[str]:
    rows = [
        [
            "`mailbeacon send` (render, instrument, queue)",
            f"{run.queued:,} of {run.recipients:,}",
            f"{run.seconds:.1f} s",
            f"{run.rate:,.0f}",
        ],
        [
            "`mailbeacon serve --upstream` (to a loopback SMTP server)",
            f"{run.delivered:,} of {run.queued:,}",
            f"{run.delivery_seconds:.1f} s",
            f"{run.delivery_rate:,.0f}",
        ],
    ]
    return [
        "## Campaigns",
        "",
        f"`mailbeacon send` of a {run.html_bytes / 1000:.0f} KB HTML template with "
        f"{CAMPAIGN_LINKS} links (150 distinct) and a personal greeting to {run.recipients:,} "
        "recipients on SQLite, timed as a whole command (start-up included): each copy is "
        "rendered, instrumented (pixel, tracked links), composed, registered and queued. Then "
        "`mailbeacon serve` with `--upstream` at "
        + (
            f"`{UPSTREAM}` (`BENCH_UPSTREAM`)"
            if UPSTREAM
            else "a loopback aiosmtpd server (two processes) that writes each message to a Maildir"
        )
        + ", timed from its start to the last copy accepted. "
        f"Target: ≥ {TARGET_CAMPAIGN_RATE} messages/s.",
        "",
        *table(["step", "messages", "wall clock", "messages/s"], rows),
    ]


def campaign_warnings(run: Campaign) -> list[str]:
    found = []
    if run.rate < TARGET_CAMPAIGN_RATE:
        found.append(
            f"campaign: {run.rate:,.0f} messages/s queued, "
            f"below the {TARGET_CAMPAIGN_RATE}/s target"
        )
    if not run.complete:
        found.append(
            f"campaign: {run.queued:,} queued, {run.stored:,} in the queue and {run.delivered:,} "
            f"delivered of {run.recipients:,} recipients"
        )
    return found
