"""``mailbeacon users``: users (tenants) and their API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from mailbeacon import accounts
from mailbeacon.cli.common import console, fail, open_db, print_json, with_settings
from mailbeacon.settings import Settings
from mailbeacon.store import queries

app = typer.Typer(help="Manage users, their API keys and passwords.", no_args_is_help=True)

PasswordOption = Annotated[
    str | None,
    typer.Option(
        "--password",
        help=f"The password to sign in to the dashboard with (at least {accounts.MIN_PASSWORD} "
        "characters). It stays in your shell's history: --ask-password does not.",
    ),
]


def _ask_password() -> str:
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("add")
@with_settings
def add(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    password: PasswordOption = None,
    ask_password: Annotated[
        bool, typer.Option("--ask-password", help="Prompt for the password (hidden, twice).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Add a user and print their first API key (shown once); with a password, they can sign
    in to the dashboard."""
    if ask_password and password is None:
        password = _ask_password()
    try:
        with open_db(settings) as db:
            user = db.write(accounts.create_user, email, is_admin=admin, password=password)
    except queries.DuplicateUser as exc:
        raise fail(f"a user {email!r} already exists") from exc
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json({"email": user.email, "api_key": user.api_key})
    else:
        console.print(f"Added {user.email}. API key (shown once): {user.api_key}", highlight=False)


@app.command("password")
@with_settings
def password(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    new: PasswordOption = None,
    *,
    settings: Settings,
) -> None:
    """Set or reset a user's dashboard password (asked for, hidden, when not given); it signs
    them out everywhere."""
    with open_db(settings) as db:
        user_id = db.read(queries.user_by_email, email)
        if user_id is None:
            raise fail(f"no user {email!r}: add one with `mailbeacon users add {email}`")
        try:
            db.write(accounts.set_password, user_id, _ask_password() if new is None else new)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    console.print(f"{email} can sign in with the new password.", highlight=False)


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
