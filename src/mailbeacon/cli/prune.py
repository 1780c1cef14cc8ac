"""``mailbeacon prune``: remove what is older than the retention windows, now."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailbeacon import retention
from mailbeacon.accounts import now_us
from mailbeacon.cli.common import console, errors, open_db, print_json, with_settings
from mailbeacon.settings import Settings


@with_settings
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; remove nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Remove hits older than --retention-days and operational rows older than
    --ops-retention-days (as `serve` does hourly); print what went."""
    with open_db(settings) as db:
        found = db.read(retention.plan, retention.steps(settings, now_us()))
        totals = found.totals()
        if dry_run:
            report = retention.Report(totals, [m.table for m, _ in found.months])
        else:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=errors,
                disable=as_json or not errors.is_terminal or not any(totals.values()),
            ) as progress:
                tasks = {what: progress.add_task(what, total=n) for what, n in totals.items()}
                # Running beside serve's hourly run is safe: what both remove goes once.
                report = retention.prune(
                    found, db.write, advance=lambda what, n: progress.advance(tasks[what], n)
                )
    if as_json:
        print_json({"dry_run": dry_run, "removed": report.removed, "months_dropped": report.months})
        return
    table = Table("what", "would go" if dry_run else "removed", title="Retention")
    for what in totals:
        table.add_row(what, str(report.removed.get(what, 0)))
    console.print(table)
    if report.months:
        verb = "would be dropped" if dry_run else "dropped"
        console.print(f"Monthly tables of hits {verb}: {', '.join(report.months)}", highlight=False)
