"""``mailbeacon stats``: campaign figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailbeacon import reports
from mailbeacon.cli.common import acting_user, console, fail, open_db, print_json, with_settings
from mailbeacon.settings import Settings


@with_settings
def stats(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    user: Annotated[str | None, typer.Option(help="Whose figures (default: the admin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Deliveries, unique opens and clicks, and the naive open rate, per campaign."""
    with open_db(settings) as db:
        rows = db.read(reports.campaign_stats, acting_user(db, user), campaign)
    if campaign is not None and not rows:
        raise fail(f"no messages in campaign {campaign!r}")
    if as_json:
        print_json(rows[0] if campaign is not None else {"campaigns": rows})
        return
    table = Table("campaign", "delivered", "unique opens", "unique clicks", "naive open rate")
    for row in rows:
        table.add_row(
            row["campaign"] or "(none)",
            str(row["delivered"]),
            str(row["unique_opens"]),
            str(row["unique_clicks"]),
            f"{row['naive_open_rate']:.1%}",
        )
    console.print(table)
