"""``mailbeacon users``: users (tenants) and their API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from mailbeacon import accounts
from mailbeacon.cli.common import console, fail, open_db, print_json, with_settings
from mailbeacon.settings import Settings
from mailbeacon.store import queries

app = typer.Typer(help="Manage users and their API keys.", no_args_is_help=True)


@app.command("add")
@with_settings
def add(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Add a user and print their first API key (shown once)."""
    try:
        with open_db(settings) as db:
            user = db.write(accounts.create_user, email, is_admin=admin)
    except queries.DuplicateUser as exc:
        raise fail(f"a user {email!r} already exists") from exc
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json({"email": user.email, "api_key": user.api_key})
    else:
        console.print(f"Added {user.email}. API key (shown once): {user.api_key}", highlight=False)


@app.command("track")
@with_settings
def track(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    default: Annotated[
        str | None,
        typer.Option(
            "--default",
            help="on: mail this user sends through the SMTP relay is tracked unless it says "
            "X-Mailbeacon-Track: no; off: only when it says X-Mailbeacon-Track: yes.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Show or set whether the relay tracks this user's mail by default."""
    if default is not None and default.lower() not in ("on", "off"):
        raise fail(f"--default takes on or off, not {default!r}")
    with open_db(settings) as db:
        user_id = db.read(queries.user_by_email, email)
        if user_id is None:
            raise fail(f"no user {email!r}: add one with `mailbeacon users add {email}`")
        if default is not None:
            db.write(queries.set_track_default, user_id, default.lower() == "on")
        on = db.read(queries.track_default, user_id)
    if as_json:
        print_json({"email": email, "track_default": on})
    elif on:
        console.print(
            f"{email}: relayed mail is tracked unless it says X-Mailbeacon-Track: no",
            highlight=False,
        )
    else:
        console.print(
            f"{email}: relayed mail is tracked only when it says X-Mailbeacon-Track: yes",
            highlight=False,
        )
