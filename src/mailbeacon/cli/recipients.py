"""``mailbeacon recipients``: one recipient's consent and tracking mode, and their data exported
or erased (what the API's ``/api/v1/recipients/{address}`` routes do)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mailbeacon import accounts, privacy
from mailbeacon.cli.common import acting_user, console, fail, open_db, print_json, with_settings
from mailbeacon.settings import Settings
from mailbeacon.store import privacy as store

app = typer.Typer(
    help="One recipient's consent and tracking mode; export or erase their data.",
    no_args_is_help=True,
)

Address = Annotated[str, typer.Argument(help="The recipient's email address.")]
User = Annotated[str | None, typer.Option(help="Whose recipient (default: the admin).")]


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False)


@app.command("consent")
@with_settings
def consent(
    address: Address,
    state: Annotated[str, typer.Argument(help="granted, denied or unknown.")],
    source: Annotated[str, typer.Option(help="Where the answer came from.")] = "cli",
    user: User = None,
    *,
    settings: Settings,
) -> None:
    """Record a recipient's consent to tracking (denied: their mail carries none)."""
    if state not in privacy.CONSENT:
        raise fail(f"the state is one of {', '.join(privacy.CONSENT)}, not {state!r}")
    with open_db(settings) as db:
        user_id = acting_user(db, user)
        db.write(store.set_consent, user_id, address, state, source[:200], now=accounts.now_us())
    _say(f"{address}: consent {state} ({source[:200]})")


@app.command("tracking")
@with_settings
def tracking(
    address: Address,
    mode: Annotated[str, typer.Argument(help="off, anonymous, pseudonymous or full.")],
    user: User = None,
    *,
    settings: Settings,
) -> None:
    """Set the most a recipient is tracked (your default and a send's may be stricter)."""
    try:
        chosen = privacy.mode(mode, "mode")
    except ValueError as exc:
        raise fail(str(exc)) from exc
    with open_db(settings) as db:
        user_id = acting_user(db, user)
        db.write(store.set_recipient_tracking, user_id, address, chosen, now=accounts.now_us())
    _say(f"{address}: tracking {chosen}")


@app.command("export")
@with_settings
def export(
    address: Address,
    out: Annotated[
        Path | None, typer.Option(help="Write the JSON here, not to the screen.")
    ] = None,
    user: User = None,
    *,
    settings: Settings,
) -> None:
    """Everything kept about a recipient, as JSON."""
    with open_db(settings) as db:
        found = db.read(store.export, acting_user(db, user), address)
    data = {"address": address, **found}
    if out is None:
        print_json(data)
        return
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    _say(f"{address}: written to {out}")


@app.command("erase")
@with_settings
def erase(
    address: Address,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
    user: User = None,
    *,
    settings: Settings,
) -> None:
    """Erase a recipient's data everywhere (their suppression, if any, stays)."""
    if not yes and not typer.confirm(f"Erase everything kept about {address}?"):
        raise typer.Exit(1)
    with open_db(settings) as db:
        removed = db.write(store.erase, acting_user(db, user), address)
    counts = ", ".join(f"{n} {what}" for what, n in removed.items() if n) or "nothing"
    _say(f"{address}: erased {counts}")
