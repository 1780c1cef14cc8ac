"""``mailbeacon watch``: a user's opens, clicks, bounces and unsubscribes, live in the terminal."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mailbeacon.cli.common import acting_user, console, fail, open_db, printable, with_settings
from mailbeacon.notify.alerts import summary
from mailbeacon.notify.events import EVENT_TYPES, payload
from mailbeacon.notify.stream import PAGE, POLL, STREAM_TYPES
from mailbeacon.settings import Settings
from mailbeacon.store import notify as store

ROWS = 25  # the newest events shown


def _row(event: store.Event) -> list[Text]:
    """One event as table cells; every cell is plain text (recipients, subjects and clients
    come from mail and requests: no markup is read into them)."""
    seen = summary(event.type, event.created_at, json.loads(event.data))
    at = time.strftime("%H:%M:%S", time.localtime(event.created_at / 1e6))
    cells = [at, seen["what"], seen["recipient"], seen["subject"], seen["device"], seen["after"]]
    return [Text(printable(c), overflow="ellipsis", no_wrap=True) for c in cells]


def _table(rows: Iterable[list[Text]]) -> Table:
    table = Table(
        "time", "event", "recipient", "subject", "client or reason", "after sending",
        title="Live: people's opens and clicks (machines and your own views never show)",
        expand=True,
    )  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


@with_settings
def watch(
    user: Annotated[str | None, typer.Option(help="Whose events (default: the admin).")] = None,
    event_types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help="Only these types (repeat); default: opened, clicked, bounced, unsubscribed.",
        ),
    ] = None,
    after: Annotated[
        int | None, typer.Option(help="Start after this event id (default: from now).")
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="Stop after this many events (default: never).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON event a line (the webhook body, with its id).")
    ] = False,
    *,
    settings: Settings,
) -> None:
    """Watch opens and clicks as they happen: who opened what, on which client, how long after
    sending. Ctrl-C stops."""
    types = tuple(event_types or STREAM_TYPES)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise fail(f"unknown event type {unknown[0]!r}: expected {', '.join(EVENT_TYPES)}")
    seen = 0
    shown: deque[list[Text]] = deque(maxlen=ROWS)
    with open_db(settings) as db:
        user_id = acting_user(db, user)
        last = db.read(store.last_event_id, user_id) if after is None else after
        live = None if as_json else Live(_table(shown), console=console, auto_refresh=False)
        try:
            if live is not None:
                live.start()
            while count is None or seen < count:
                found = db.read(store.events_after, user_id, last, PAGE, types)
                for event in found[: None if count is None else count - seen]:
                    if live is None:
                        body = json.loads(payload(event.type, event.created_at, event.data))
                        typer.echo(json.dumps({"id": event.id, **body}, ensure_ascii=False))
                    else:
                        shown.appendleft(_row(event))
                        live.update(_table(shown), refresh=True)
                    last, seen = event.id, seen + 1
                if len(found) < PAGE and (count is None or seen < count):
                    time.sleep(POLL / 2)
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()
