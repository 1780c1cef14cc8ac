"""``mailbeacon signatures``: the lists that recognise fetchers, kept in the data directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from mailbeacon.classify import apple
from mailbeacon.cli.common import console, errors, fail, print_json, with_settings
from mailbeacon.settings import Settings

app = typer.Typer(
    help="Keep the lists that recognise fetchers: Apple's Private Relay egress ranges.",
    no_args_is_help=True,
)


@app.command("update")
@with_settings
def update(
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A URL or local file to fetch the list from (default: Apple's published CSV).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Fetch Apple's egress list and keep it in the data directory.

    A failed or unusable download is refused, and the copy already kept stays.
    """
    try:
        report = apple.update(settings.data, source)
    except apple.EgressListError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(report.as_json())
    else:
        console.print(
            f"Kept {report.networks} networks from {report.source} "
            f"(fetched {_when(report.fetched_at)}) in {report.path}.",
            highlight=False,
            markup=False,
        )
    if settings.apple_egress is not None:
        errors.print(
            f"note: --apple-egress is set, so {settings.apple_egress} is used instead.",
            highlight=False,
            markup=False,
        )


@app.command("status")
@with_settings
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Where the egress list in use came from, when it was fetched, and how many networks."""
    try:
        state = apple.load(settings.data, settings.apple_egress).status
    except apple.EgressListError as exc:
        raise fail(str(exc)) from exc
    now = datetime.now(UTC)
    if as_json:
        print_json(state.as_json(now))
        return
    if state.fetched_at is None:
        console.print(
            f"No copy of Apple's egress list is kept in {settings.data} yet, so no hit is "
            "recognised as Apple Mail Privacy Protection by its address. Fetch it with "
            "`mailbeacon signatures update` (offline: `--from FILE`, or set --apple-egress).",
            highlight=False,
            markup=False,
        )
        return
    age = state.age(now) or timedelta()
    lines = [
        f"{state.networks} networks from {state.source}",
        f"fetched {_when(state.fetched_at)}, {_age_text(age)} ago",
    ]
    if state.override:
        lines.append("set by --apple-egress: used as is, never refreshed")
    elif settings.apple_egress_refresh and age > timedelta(hours=settings.apple_egress_refresh):
        lines.append(
            f"older than --apple-egress-refresh ({settings.apple_egress_refresh:g} h): "
            "`serve` refreshes it at its next check"
        )
    console.print("\n".join(lines), highlight=False, markup=False)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _age_text(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes = seconds // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
