"""`mailbeacon replay` timed on a generated log of opens and clicks from varied clients; the
dashboard's section replays such a log too."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from processes import BenchError, Processes
from servers import MAILBEACON, add_user, count_hits, flags, mailbeacon, register, sqlite_db
from tables import table, yes

REPLAY_BATCHES = 4  # POSTs of REPLAY_RECIPIENTS each: a few hundred messages to hit
REPLAY_RECIPIENTS = 100
TARGET_REPLAY_RATE = 20_000  # hits/s

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Barracuda Sentinel (EE)",
)


@dataclass(frozen=True)
class Replay:
    database: str
    lines: int  # lines written to the file
    read: int  # lines `mailbeacon replay` reports it read
    recorded: int
    bad: int
    stored: int  # rows in `hits` afterwards
    seconds: float  # wall clock of the whole command

    @property
    def rate(self) -> float:
        return self.recorded / self.seconds

    @property
    def complete(self) -> bool:
        return self.read == self.recorded == self.stored == self.lines and self.bad == 0


def write_hits(path: Path, messages: Sequence[dict[str, Any]], lines: int) -> None:
    """Opens (mostly) and clicks of the registered messages from varied clients, 1 ms apart."""
    rng = random.Random(7151)
    start = datetime.now(UTC) + timedelta(minutes=1)
    ips = (
        *(f"198.51.100.{i}" for i in range(1, 255)),
        *(f"203.0.113.{i}" for i in range(1, 255)),
        *(f"66.249.84.{i}" for i in range(1, 255)),
        *(f"2001:db8::{i:x}" for i in range(1, 255)),
    )
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            message = rng.choice(messages)
            is_click = rng.random() < 0.25
            url = message["links"][0]["tracked_url"] if is_click else message["pixel_url"]
            hit = {
                "time": (start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
                "method": "HEAD" if rng.random() < 0.02 else "GET",
                "url": url,
                "ip": rng.choice(ips),
                "headers": {"User-Agent": rng.choice(USER_AGENTS), "Accept": "image/*"},
            }
            out.write(json.dumps(hit) + "\n")


def replay(procs: Processes, data: Path, db: str | None, lines: int) -> Replay:
    """Register a few hundred messages, write ``lines`` hits of them, time `mailbeacon replay`."""
    key = add_user(procs, data, db)
    with mailbeacon(procs, data, db) as server:
        messages = [
            message
            for batch in range(REPLAY_BATCHES)
            for message in register(
                server, key, [f"r{batch}-{i}@example.test" for i in range(REPLAY_RECIPIENTS)]
            )
        ]
    hits = data / "hits.jsonl"
    write_hits(hits, messages, lines)
    started = time.monotonic()
    done = procs.run([*MAILBEACON, "replay", str(hits), "--json", *flags(data, db)], 3600)
    seconds = time.monotonic() - started
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchError(f"`mailbeacon replay` failed ({done.returncode}): {done.stderr}") from exc
    return Replay(
        database="PostgreSQL" if db else "SQLite",
        lines=lines,
        read=report["lines"],
        recorded=report["recorded"],
        bad=report["bad"],
        stored=count_hits(db or sqlite_db(data)),
        seconds=seconds,
    )


def replay_table(replays: Sequence[Replay]) -> list[str]:
    rows = [
        [
            r.database,
            f"{r.lines:,}",
            f"{r.recorded:,}",
            f"{r.stored:,}",
            str(r.bad),
            f"{r.seconds:.1f} s",
            f"{r.rate:,.0f}",
            yes(r.complete),
        ]
        for r in replays
    ]
    header = ["database", "lines", "recorded", "rows in hits", "bad", "wall clock", "hits/s", "all"]
    return table(header, rows)
