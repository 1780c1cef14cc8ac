"""The time from a hit to its webhook, at a loopback receiver (`bench/run.py notify` runs it
alone)."""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from processes import Processes
from servers import HTML, THUNDERBIRD, NoRedirect, add_user, api_post, mailbeacon
from settings import NOTIFY_HITS
from tables import table

NOTIFY_SPACING = 0.05  # seconds between hits: a busy sender's traffic, not a load test
TARGET_NOTIFY_P95 = 2.0  # seconds from a clear hit to its webhook
NOTIFY_TIMEOUT = 60  # seconds to wait for the last webhook


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook endpoint that notes when each event arrived, by the hit it is about."""

    arrived: ClassVar[dict[tuple[str, str], float]] = {}  # (message id, kind) → when

    def do_POST(self) -> None:
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["data"]
        self.arrived.setdefault((data["message_id"], data["kind"]), time.time())
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Latency:
    kind: str  # "open" | "click"
    sent: int
    delays: list[float]  # seconds, hit answered → webhook received

    def quantile(self, q: float) -> float:
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.inf


def notify_latency(procs: Processes, data: Path) -> list[Latency]:
    """Hits long after sending (a known mail client: a clear verdict) one at a time, each timed
    from its answer to its webhook's arrival at a loopback receiver; SQLite."""
    key = add_user(procs, data, None)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    extra = ["--allow-private-webhooks", "--trusted-proxies", "127.0.0.1/32"]
    try:
        with mailbeacon(procs, data, None, extra) as server:
            hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
            api_post(
                server,
                key,
                "/api/v1/webhooks",
                {"url": hook, "events": ["email.opened", "email.clicked"]},
            )
            recipients = [f"reader{i}@example.test" for i in range(NOTIFY_HITS)]
            body = {
                "from": "bench@example.test", "to": recipients, "subject": "bench", "html": HTML,
                "sent_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            }  # fmt: skip
            messages = api_post(server, key, "/api/v1/messages", body)["messages"]
            answered: dict[tuple[str, str], float] = {}
            for kind in ("open", "click"):
                for n, m in enumerate(messages):
                    url = m["pixel_url"] if kind == "open" else m["links"][0]["tracked_url"]
                    ip = f"198.51.100.{n % 250}"
                    request = urllib.request.Request(
                        url, headers={"User-Agent": THUNDERBIRD, "X-Forwarded-For": ip}
                    )
                    with contextlib.suppress(urllib.error.HTTPError):  # a click's redirect
                        urllib.request.build_opener(NoRedirect).open(request, timeout=10).read()
                    answered[m["id"], kind] = time.time()
                    time.sleep(NOTIFY_SPACING)
            deadline = time.monotonic() + NOTIFY_TIMEOUT
            while len(_Receiver.arrived) < len(answered) and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        receiver.shutdown()
    arrived = dict(_Receiver.arrived)
    return [
        Latency(
            kind,
            sum(1 for k in answered if k[1] == kind),
            [arrived[k] - t for k, t in answered.items() if k[1] == kind and k in arrived],
        )
        for kind in ("open", "click")
    ]


def latency_report(runs: Sequence[Latency]) -> list[str]:
    rows = [
        [
            f"{r.kind}s",
            f"{len(r.delays):,} of {r.sent:,}",
            f"{statistics.median(r.delays):.2f} s" if r.delays else "—",
            f"{r.quantile(0.95):.2f} s",
            f"{max(r.delays, default=math.inf):.2f} s",
        ]
        for r in runs
    ]
    return [
        "## Notifications",
        "",
        f"{NOTIFY_HITS} opens (Thunderbird, a day after sending: a clear verdict), then as many "
        f"clicks, one every {NOTIFY_SPACING * 1000:.0f} ms, each timed from its answer to the "
        "arrival of its signed `email.opened` or `email.clicked` webhook at a loopback receiver; "
        "`mailbeacon serve` on SQLite. A click waits for the sweep check (about 1.5 s) by design. "
        f"Target: p95 ≤ {TARGET_NOTIFY_P95:.0f} s for opens.",
        "",
        *table(["hits", "notified", "p50", "p95", "max"], rows),
    ]


def latency_warnings(runs: Sequence[Latency]) -> list[str]:
    found = []
    for r in runs:
        if len(r.delays) < r.sent:
            found.append(f"notifications: {len(r.delays)} of {r.sent} {r.kind}s notified")
    opens = next(r for r in runs if r.kind == "open")
    if opens.quantile(0.95) > TARGET_NOTIFY_P95:
        found.append(
            f"notifications: p95 {opens.quantile(0.95):.2f} s from an open to its webhook, "
            f"above the {TARGET_NOTIFY_P95:.0f} s target"
        )
    return found
