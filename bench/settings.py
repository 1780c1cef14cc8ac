"""The bench's settings: environment variables, each read once here with its default; a value
that is not a positive integer stops the bench before it starts anything."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"{name} must be a positive integer, got {value!r}")
    return int(value)


SECONDS = env_int("BENCH_SECONDS", 10)
UPSTREAM = os.environ.get("BENCH_UPSTREAM", "")  # an smtp:// URL; default: the tests' server
ROUNDS = env_int("BENCH_ROUNDS", 3)
REPLAY_LINES = env_int("BENCH_REPLAY_LINES", 200_000)
SOAK_SECONDS = env_int("BENCH_SOAK_SECONDS", 600)
CAMPAIGN_RECIPIENTS = env_int("BENCH_CAMPAIGN_RECIPIENTS", 2000)
NOTIFY_HITS = env_int("BENCH_NOTIFY_HITS", 200)  # opens, then as many clicks
DASHBOARD_RECIPIENTS = env_int("BENCH_DASHBOARD_RECIPIENTS", 100_000)
DASHBOARD_HITS = env_int("BENCH_DASHBOARD_HITS", 150_000)
