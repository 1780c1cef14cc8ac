"""``mailbeacon send``: a campaign from a template and a CSV list, one tracked copy a recipient,
queued for ``mailbeacon serve`` to deliver."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mailbeacon import privacy
from mailbeacon.cli.common import (
    acting_user,
    console,
    errors,
    fail,
    open_db,
    print_json,
    with_settings,
)
from mailbeacon.send.campaign import RESERVED, CampaignSend, SendStopped, Summary
from mailbeacon.send.compose import one_line
from mailbeacon.send.copies import CopyMaker
from mailbeacon.send.recipients import ListError, address_problem, read_list
from mailbeacon.send.templates import TemplateProblem, Templates
from mailbeacon.settings import Settings
from mailbeacon.tracking.tokens import Signer

SHOWN = 20  # bad rows and suppressed recipients listed in the terminal
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*")
_PER_SECOND = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str | None) -> float | None:
    """Copies a second from ``N``, ``N/s``, ``N/m`` or ``N/h``; None: no limit."""
    if value is None:
        return None
    match = _RATE.fullmatch(value)
    if match is None or float(match.group(1)) <= 0:
        raise fail(
            f"--rate: expected a number a second, minute or hour (50/s, 600/m), not {value!r}"
        )
    return float(match.group(1)) / _PER_SECOND[match.group(2) or "s"]


def _sender(value: str) -> Address:
    name, address = parseaddr(value)
    problem = address_problem(address)
    if problem is not None:
        raise fail(f"--from: {problem}")
    return Address(one_line(name), addr_spec=address)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


@with_settings
def send(
    *,
    campaign: Annotated[
        str, typer.Option(help="The campaign's name: its statistics, and what a rerun skips.")
    ],
    sender: Annotated[str, typer.Option("--from", help="From: an address or 'Name <address>'.")],
    subject: Annotated[str, typer.Option(help="The subject, a template like the bodies.")],
    template: Annotated[
        Path, typer.Option(help="The HTML body: a Jinja2 template.", exists=True, dir_okay=False)
    ],
    to: Annotated[
        Path,
        typer.Option(
            help="The recipients: CSV with a header row and an `email` column.",
            exists=True,
            dir_okay=False,
        ),
    ],
    text: Annotated[
        Path | None,
        typer.Option(help="A plain-text body, a template too.", exists=True, dir_okay=False),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="At most N copies to the queue a second (N/s), a minute (N/m) or an hour "
            "(N/h); default: no limit."
        ),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Whose campaign (default: the admin).")] = None,
    tracking: Annotated[
        str | None,
        typer.Option(
            help="off, anonymous, pseudonymous or full; the strictest of it, your default and "
            "each recipient's (their consent included) applies."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    settings: Settings,
) -> None:
    """Queue a tracked copy of a campaign for each recipient of a CSV list.

    Every column of the list is a template variable, and so is `unsubscribe_url`.
    Recipients who unsubscribed or bounced are skipped, and so are those an earlier run queued.
    `mailbeacon serve --upstream URL` delivers the queue.
    """
    per_second = parse_rate(rate)
    try:
        templates = Templates(subject, _read(template), _read(text) if text else None)
    except TemplateProblem as exc:
        raise fail(str(exc)) from exc
    try:
        recipients = read_list(to, reserved=RESERVED)
    except ListError as exc:
        raise fail(f"{to}: {exc}") from exc
    try:
        asked = privacy.mode(tracking, "--tracking") if tracking is not None else None
    except ValueError as exc:
        raise fail(str(exc)) from exc
    maker = CopyMaker(
        Signer(settings.secrets), settings.public_url, campaign, _sender(sender), templates,
        tracking=asked,
    )  # fmt: skip
    stopped: SendStopped | None = None
    interrupted = False
    with (
        open_db(settings) as db,
        Progress(
            TextColumn("queueing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=errors,
            disable=as_json or not errors.is_terminal,
        ) as progress,
    ):
        run = CampaignSend(db, maker, acting_user(db, user), rows=recipients.rows, rate=per_second)
        run.summary.bad = recipients.bad
        task = progress.add_task("send", total=len(recipients.recipients))
        try:
            run.run(recipients.recipients, lambda n: progress.advance(task, n))
        except SendStopped as exc:
            stopped = exc
        except KeyboardInterrupt:
            interrupted = True  # the batch in hand was rolled back; the rest are queued
    _report(run.summary, to, stopped, interrupted, as_json=as_json)
    if stopped is not None:
        raise fail(
            f"{to}, {stopped}. The send stopped there; fix it and run the same command again: "
            "the recipients already queued are skipped."
        )
    if interrupted:
        raise typer.Exit(130)
    if recipients.bad:
        raise typer.Exit(1)  # the good rows are queued all the same


def _report(
    summary: Summary, to: Path, stopped: SendStopped | None, interrupted: bool, *, as_json: bool
) -> None:
    if as_json:
        data: dict[str, Any] = {
            "campaign": summary.campaign,
            "rows": summary.rows,
            "queued": summary.queued,
            "already_sent": summary.already_sent,
            "suppressed": len(summary.suppressed),
            "suppressed_recipients": [
                {"address": address, "reason": reason} for address, reason in summary.suppressed
            ],
            "bad": len(summary.bad),
            "bad_rows": [{"line": line, "error": why} for line, why in summary.bad],
            "stopped": None
            if stopped is None
            else {"line": stopped.line, "error": stopped.problem},
            "interrupted": interrupted,
        }
        print_json(data)
        return
    for line, why in summary.bad[:SHOWN]:
        errors.print(f"{to}:{line}: {why}", highlight=False, markup=False)
    if len(summary.bad) > SHOWN:
        errors.print(f"… and {len(summary.bad) - SHOWN} more bad rows", highlight=False)
    for address, reason in summary.suppressed[:SHOWN]:
        console.print(f"suppressed: {address} ({reason})", highlight=False, markup=False)
    if len(summary.suppressed) > SHOWN:
        console.print(f"… and {len(summary.suppressed) - SHOWN} more suppressed", highlight=False)
    console.print(
        f"{summary.campaign}: {summary.queued} queued, {len(summary.suppressed)} suppressed, "
        f"{summary.already_sent} already sent, {len(summary.bad)} bad rows "
        f"({summary.rows} rows)",
        highlight=False,
        markup=False,
    )
    if interrupted:
        errors.print("interrupted: run the same command again to queue the others", highlight=False)
    elif stopped is None and summary.queued:
        console.print(
            "`mailbeacon serve --upstream URL` delivers them.", highlight=False, markup=False
        )
