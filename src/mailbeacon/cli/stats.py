"""``mailbeacon stats``: campaign figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailbeacon import reports
from mailbeacon.cli.common import acting_user, console, fail, open_db, print_json, with_settings
from mailbeacon.settings import Settings
from mailbeacon.store import queries


@with_settings
def stats(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    recipient: Annotated[
        str | None, typer.Option(help="One recipient's messages, all campaigns together.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Whose figures (default: the admin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Open and click rates per campaign: naive, observed, inferred and estimated."""
    with open_db(settings) as db:
        scope = queries.Scope(acting_user(db, user), campaign=campaign, recipient=recipient)
        rows = db.read(reports.stats, scope)
    if (campaign is not None or recipient is not None) and not rows:
        where = f"to {recipient!r}" if recipient else f"in campaign {campaign!r}"
        raise fail(f"no messages {where}")
    if as_json:
        print_json(
            rows[0] if campaign is not None or recipient is not None else {"campaigns": rows}
        )
        return
    table = Table(
        "campaign", "delivered", "naive", "observed", "inferred", "estimated (95%)", "clicks",
        title="Open rates: naive counts every fetch; the others only people",
    )  # fmt: skip
    for row in rows:
        low, high = row["estimated_open_rate_interval"]
        table.add_row(
            row.get("campaign") or "(none)",
            str(row["delivered"]),
            f"{row['naive_open_rate']:.1%}",
            f"{row['observed_open_rate']:.1%}",
            f"{row['inferred_open_rate']:.1%}",
            f"{row['estimated_open_rate']:.1%} ({low:.1%}–{high:.1%})",
            f"{row['click_rate']:.1%}",
        )
    console.print(table)
    console.print("Estimated assumes:", style="bold")
    for assumption in rows[0]["assumptions"] if rows else ():
        console.print(f"• {assumption}", highlight=False)
