"""``mailbeacon explain MESSAGE_ID``: every hit of a message, and why it was counted or not."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mailbeacon import reports
from mailbeacon.cli.common import (
    acting_user,
    console,
    fail,
    open_db,
    print_json,
    printable,
    with_settings,
)
from mailbeacon.settings import Settings


def shown(text: str) -> str:
    """Text from a recipient's request or the mail: never read as markup, and nothing in it a
    terminal would obey."""
    return escape(printable(text))


@with_settings
def explain(
    message_id: Annotated[str, typer.Argument(help="The message's id (from the API).")],
    user: Annotated[str | None, typer.Option(help="Whose message (default: the admin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Each hit of a message with its verdict, agent, confidence and reasons."""
    with open_db(settings) as db:
        found = db.read(reports.message, acting_user(db, user), message_id)
    if found is None:
        raise fail(f"no message {message_id!r}")
    if as_json:
        print_json(found)
        return
    console.print(
        f"{shown(found['subject'])} → {shown(found['recipient'])}, sent {found['sent_at']}: "
        f"[bold]{found['state'].replace('_', ' ')}[/bold]"
    )
    table = Table("time", "kind", "verdict", "agent", "conf.", "client", "why")
    for hit in found["hits"]:
        why = "\n".join(shown(f"{r['rule']}: {r['why']}") for r in hit["reasons"])
        client = " ".join(filter(None, (hit["client"]["name"], hit["client"]["os"])))
        table.add_row(
            hit["time"],
            hit["kind"],
            hit["verdict"] + (f" (revised by {hit['revised_by']})" if hit["revised_by"] else ""),
            hit["agent"],
            f"{hit['confidence']:.2f}",
            shown(client),
            why,
        )
    console.print(table)
