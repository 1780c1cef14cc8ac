"""The ``mailbeacon`` command."""

from __future__ import annotations

import typer

from mailbeacon.cli import (
    explain,
    instrument,
    prune,
    recipients,
    replay,
    secret,
    send,
    serve,
    signatures,
    stats,
    users,
    watch,
    webhooks,
)

app = typer.Typer(
    help="mailbeacon: email open and click tracking that tells the truth about opens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.add_typer(users.app, name="users")
app.command("instrument")(instrument.instrument)
app.command("send")(send.send)
app.command("replay")(replay.replay)
app.command("prune")(prune.prune)
app.command("stats")(stats.stats)
app.command("explain")(explain.explain)
app.command("watch")(watch.watch)
app.add_typer(secret.app, name="secret")
app.add_typer(signatures.app, name="signatures")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(recipients.app, name="recipients")


def main() -> None:
    app()
