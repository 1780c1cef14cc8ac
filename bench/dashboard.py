"""The dashboard's pages timed on a large campaign (`bench/run.py dashboard` runs it alone)."""

from __future__ import annotations

import contextlib
import http.cookiejar
import sqlite3
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from processes import BenchError, Processes
from replay import write_hits
from servers import (
    BENCH_PASSWORD,
    HTML,
    MAILBEACON,
    NoRedirect,
    add_user,
    api_post,
    flags,
    mailbeacon,
    sqlite_db,
)
from settings import DASHBOARD_HITS, DASHBOARD_RECIPIENTS
from tables import table

DASHBOARD_BATCH = 1000  # recipients a POST /api/v1/messages
DASHBOARD_TIMES = 5  # requests a page; the median is reported
TARGET_PAGE_MS = 300


@dataclass(frozen=True)
class PageTime:
    path: str
    status: int
    times_ms: list[float]

    @property
    def median(self) -> float:
        """Of the requests after the first (which may compute what the others reuse)."""
        return statistics.median(self.times_ms[1:])


@dataclass(frozen=True)
class Dashboard:
    pages: list[PageTime]
    keeper_seconds: float  # what computing the large campaign's figures took


def _signed_in(base: str) -> urllib.request.OpenerDirector:
    """An opener that carries a signed-in session of the bench user."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    form = urllib.parse.urlencode({"email": "bench@example.test", "password": BENCH_PASSWORD})
    request = urllib.request.Request(
        base + "/login", data=form.encode(), headers={"Origin": base}, method="POST"
    )
    with contextlib.suppress(urllib.error.HTTPError):  # the 303 to /
        opener.open(request, timeout=60).read()
    if not any(c.name == "mb_session" for c in jar):
        raise BenchError("the bench user could not sign in to the dashboard")
    return opener


def dashboard(procs: Processes, data: Path) -> Dashboard:
    """A campaign of DASHBOARD_RECIPIENTS with DASHBOARD_HITS hits (replayed), then each page
    requested DASHBOARD_TIMES times by a signed-in user; SQLite."""
    key = add_user(procs, data, None)
    with mailbeacon(procs, data, None) as server:
        sent_at = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        messages: list[dict[str, Any]] = []
        for start in range(0, DASHBOARD_RECIPIENTS, DASHBOARD_BATCH):
            count = min(DASHBOARD_BATCH, DASHBOARD_RECIPIENTS - start)
            recipients = [f"reader{start + i}@example.test" for i in range(count)]
            body = {"from": "bench@example.test", "to": recipients, "subject": "Big news",
                    "html": HTML, "campaign": "big", "sent_at": sent_at}  # fmt: skip
            messages += api_post(server, key, "/api/v1/messages", body)["messages"]
    hits = data / "hits.jsonl"
    write_hits(hits, messages[: DASHBOARD_RECIPIENTS * 6 // 10], DASHBOARD_HITS)
    done = procs.run([*MAILBEACON, "replay", str(hits), "--json", *flags(data, None)], 3600)
    if done.returncode != 0:
        raise BenchError(f"`mailbeacon replay` failed: {done.stderr}")
    paths = [
        "/", "/messages", "/messages?state=not_opened", "/messages?state=machine_only",
        "/messages?q=reader99999", f"/messages/{messages[0]['id']}", "/campaigns",
        "/campaigns/big", "/settings",
    ]  # fmt: skip
    started = time.time()
    with mailbeacon(procs, data, None) as server:
        keeper_seconds = _kept_figures(sqlite_db(data), "big", started)
        opener = _signed_in(server.base)
        timed = []
        for path in paths:
            times, status = [], 0
            for _ in range(DASHBOARD_TIMES):
                started = time.perf_counter()
                with opener.open(server.base + path, timeout=120) as response:
                    response.read()
                    status = response.status
                times.append((time.perf_counter() - started) * 1000)
            timed.append(PageTime(path, status, times))
    return Dashboard(timed, keeper_seconds)


def _kept_figures(db: str, campaign: str, started: float) -> float:
    """Wait until ``serve``'s background keeper has computed the campaign's figures (it does for
    a large campaign as it starts); what computing them took, in seconds."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            row = conn.execute(
                "SELECT took_us FROM campaign_figures WHERE campaign = ? AND computed_at >= ?",
                (campaign, int(started * 1e6)),
            ).fetchone()
        if row is not None:
            return int(row[0]) / 1e6
        time.sleep(0.2)
    raise BenchError(f"the figures of campaign {campaign!r} were not computed in 300 s")


def dashboard_report(run: Dashboard) -> list[str]:
    rows = [
        [f"`{p.path}`", str(p.status), f"{p.times_ms[0]:.0f} ms", f"{p.median:.0f} ms",
         f"{max(p.times_ms[1:]):.0f} ms"]
        for p in run.pages
    ]  # fmt: skip
    return [
        "## Dashboard",
        "",
        f"A campaign to {DASHBOARD_RECIPIENTS:,} recipients (registered through the API) with "
        f"{DASHBOARD_HITS:,} hits (`mailbeacon replay`: opens and clicks from varied clients), "
        f"on SQLite; each page requested {DASHBOARD_TIMES} times in a row by a signed-in user "
        f"(urllib on loopback, the whole answer read): the first request, then the median and "
        "the slowest of the others. A large campaign's figures (statistics and charts) are "
        "computed by `serve` in the background as soon as it starts and whenever they are stale "
        "while someone looks, and pages show them as of then; here that took "
        f"{run.keeper_seconds:.1f} s, and the pages were timed once it was done. "
        f"Target: under {TARGET_PAGE_MS} ms.",
        "",
        *table(["page", "status", "first", "median after", "slowest after"], rows),
    ]


def dashboard_warnings(run: Dashboard) -> list[str]:
    pages = run.pages
    return [
        f"dashboard: {p.path} took {t:.0f} ms ({which}), over the {TARGET_PAGE_MS} ms target"
        for p in pages
        for t, which in ((p.times_ms[0], "first request"), (p.median, "median after"))
        if t > TARGET_PAGE_MS
    ] + [f"dashboard: {p.path} answered {p.status}" for p in pages if p.status != 200]
