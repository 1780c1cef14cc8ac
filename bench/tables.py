"""Markdown, as BENCHMARKS.md and each section's report write it."""

from __future__ import annotations

from collections.abc import Sequence


def yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
