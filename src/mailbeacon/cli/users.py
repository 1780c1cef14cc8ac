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
