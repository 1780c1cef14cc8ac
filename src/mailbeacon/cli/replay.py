"""``mailbeacon replay``: recorded hits through the same pipeline as live traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from mailbeacon.classify import signatures
from mailbeacon.classify.apple import AppleEgress
from mailbeacon.classify.pipeline import Classifier
from mailbeacon.cli.common import console, errors, open_db, print_json, with_settings
from mailbeacon.ingest.replay import Replayer
from mailbeacon.settings import Settings
from mailbeacon.tracking.tokens import Signer

SHOWN_BAD_LINES = 20


@with_settings
def replay(
    hits: Annotated[
        Path, typer.Argument(help="JSON lines: time, method, url, ip, headers.", exists=True)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Process recorded hits as if received at their `time`; report bad lines by number."""
    with (
        open_db(settings) as db,
        hits.open(encoding="utf-8", errors="replace") as lines,
        Progress(
            TextColumn("replaying"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=errors,
            disable=as_json or not errors.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("replay", total=hits.stat().st_size)
        # Apple's list as kept in the data directory (or --apple-egress); replay never
        # downloads it: `mailbeacon signatures update` does.
        classifier = Classifier(
            AppleEgress.from_settings(settings), signatures.load(settings.signatures)
        )
        report = Replayer(db, Signer(settings.secrets), classifier, settings.minimising).run(
            lines, lambda n: progress.advance(task, n)
        )
    if as_json:
        print_json(
            {
                "lines": report.lines,
                "recorded": report.recorded,
                "revised": report.revised,
                "bad": len(report.bad),
                "bad_lines": [{"line": n, "error": why} for n, why in report.bad],
            }
        )
    else:
        for number, why in report.bad[:SHOWN_BAD_LINES]:
            errors.print(f"{hits}:{number}: {why}", highlight=False, markup=False)
        if len(report.bad) > SHOWN_BAD_LINES:
            errors.print(f"… and {len(report.bad) - SHOWN_BAD_LINES} more bad lines")
        console.print(
            f"{report.recorded} hits recorded ({report.revised} earlier verdicts revised), "
            f"{len(report.bad)} bad lines, "
            f"{report.lines} lines read",
            highlight=False,
        )
    if report.bad:
        raise typer.Exit(1)  # the good lines are recorded all the same
