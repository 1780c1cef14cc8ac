"""``mailbeacon webhooks``: webhook endpoints, their secrets and their delivery logs.

URLs and the errors endpoints answered with are someone else's text: they are printed as they
are, never read as Rich markup.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mailbeacon.accounts import now_us
from mailbeacon.cli.common import acting_user, console, fail, open_db, print_json, with_settings
from mailbeacon.notify import webhooks
from mailbeacon.notify.events import EVENT_TYPES
from mailbeacon.settings import Settings
from mailbeacon.store import webhooks as store
from mailbeacon.store.webhooks import Endpoint

app = typer.Typer(
    help="Manage webhook endpoints: subscribe URLs to events, rotate secrets, read delivery logs.",
    no_args_is_help=True,
)

WebhookId = Annotated[str, typer.Argument(help="The endpoint's id (wh_…).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False)


def _line(endpoint: Endpoint) -> str:
    state = "enabled" if endpoint.enabled else f"disabled: {endpoint.disabled_reason}"
    return (
        f"{endpoint.id}  {endpoint.url}\n  {', '.join(endpoint.events)}; {endpoint.owner}; {state}"
    )


def _missing(webhook_id: str) -> typer.Exit:
    return fail(f"no webhook {webhook_id!r}: `mailbeacon webhooks list` shows them")


@app.command("add")
@with_settings
def add(
    url: Annotated[str, typer.Argument(help="Where to POST events: an http(s) URL.")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help=f"An event type to send, repeatable: {', '.join(EVENT_TYPES)}."
        ),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Whose events (default: the admin).")] = None,
    as_json: AsJson = False,
    *,
    settings: Settings,
) -> None:
    """Subscribe a URL to events; print its id and its secret (shown once)."""
    with open_db(settings) as db:
        user_id = acting_user(db, user)
        try:
            endpoint, secret = db.write(webhooks.create, user_id, url, event or [], now=now_us())
        except webhooks.Invalid as exc:
            raise fail(str(exc)) from exc
    if as_json:
        print_json({**webhooks.describe(endpoint), "secret": secret})
    else:
        _say(f"Added {_line(endpoint)}\nSecret (shown once): {secret}")


@app.command("list")
@with_settings
def list_(
    user: Annotated[
        str | None, typer.Option(help="Only this user's (default: everyone's).")
    ] = None,
    as_json: AsJson = False,
    *,
    settings: Settings,
) -> None:
    """List webhook endpoints, with their events, owner and state."""
    with open_db(settings) as db:
        user_id = acting_user(db, user) if user else None
        found = db.read(store.webhooks, user_id)
    if as_json:
        print_json({"webhooks": [{**webhooks.describe(e), "user": e.owner} for e in found]})
        return
    if not found:
        _say("No webhooks: `mailbeacon webhooks add URL --event email.opened` adds one.")
    for endpoint in found:
        _say(_line(endpoint))


@app.command("delete")
@with_settings
def delete(webhook_id: WebhookId, as_json: AsJson = False, *, settings: Settings) -> None:
    """Delete an endpoint, with its pending deliveries and its delivery log."""
    with open_db(settings) as db:
        if not db.write(webhooks.delete, webhook_id, None):
            raise _missing(webhook_id)
    if as_json:
        print_json({"id": webhook_id, "deleted": True})
    else:
        _say(f"Deleted {webhook_id}.")


def _switch(webhook_id: str, enabled: bool, as_json: bool, settings: Settings) -> None:
    with open_db(settings) as db:
        endpoint = db.write(webhooks.change, webhook_id, None, enabled=enabled, now=now_us())
    if endpoint is None:
        raise _missing(webhook_id)
    if as_json:
        print_json(webhooks.describe(endpoint))
    else:
        _say(_line(endpoint))


@app.command("enable")
@with_settings
def enable(webhook_id: WebhookId, as_json: AsJson = False, *, settings: Settings) -> None:
    """Enable an endpoint: the deliveries it kept pending are due at once."""
    _switch(webhook_id, True, as_json, settings)


@app.command("disable")
@with_settings
def disable(webhook_id: WebhookId, as_json: AsJson = False, *, settings: Settings) -> None:
    """Disable an endpoint: nothing is sent to it until it is enabled again."""
    _switch(webhook_id, False, as_json, settings)


@app.command("rotate-secret")
@with_settings
def rotate_secret(webhook_id: WebhookId, as_json: AsJson = False, *, settings: Settings) -> None:
    """Give an endpoint a new secret (shown once); the old one still signs for a day."""
    with open_db(settings) as db:
        secret = db.write(webhooks.rotate_secret, webhook_id, None, now=now_us())
    if secret is None:
        raise _missing(webhook_id)
    if as_json:
        print_json({"id": webhook_id, "secret": secret})
    else:
        _say(f"New secret of {webhook_id} (shown once): {secret}")


@app.command("deliveries")
@with_settings
def deliveries(
    webhook_id: WebhookId,
    after: Annotated[int, typer.Option(help="Only attempts after this one (a `next`).")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many attempts.")] = 100,
    as_json: AsJson = False,
    *,
    settings: Settings,
) -> None:
    """An endpoint's delivery log: every attempt, oldest first, with what it answered."""
    with open_db(settings) as db:
        page = db.read(webhooks.delivery_log, webhook_id, None, after, max(1, limit))
    if page is None:
        raise _missing(webhook_id)
    if as_json:
        print_json(page)
        return
    for attempt in page["deliveries"]:
        _say(_attempt(attempt))
    if not page["deliveries"]:
        _say("No attempts yet.")


def _attempt(a: dict[str, Any]) -> str:
    outcome = a["error"] or f"answered {a['status']}"
    return (
        f"{a['time']}  {a['event_type']}  {a['webhook_id']}  {a['state']}  "
        f"{a['duration_ms']:.0f} ms  {outcome}"
    )
