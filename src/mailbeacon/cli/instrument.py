"""``mailbeacon instrument``: a tracked copy of an .eml file for each of its recipients."""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated

import typer

from mailbeacon import accounts
from mailbeacon.cli.common import acting_user, console, fail, open_db, print_json, with_settings
from mailbeacon.instrument.mime import InstrumentError, header, recipients, without_bcc
from mailbeacon.settings import Settings
from mailbeacon.store import privacy as privacy_store
from mailbeacon.store import queries
from mailbeacon.tracking.register import Envelope, track_eml
from mailbeacon.tracking.tokens import Signer


def _filename(index: int, recipient: str) -> str:
    return f"{index:04d}-{re.sub(r'[^A-Za-z0-9@._-]', '_', recipient)[:80]}.eml"


@with_settings
def instrument(
    message: Annotated[Path, typer.Argument(help="The message, as an .eml file.", exists=True)],
    out: Annotated[Path, typer.Option("--out", help="Directory for the tracked copies.")],
    campaign: Annotated[str | None, typer.Option(help="Campaign the copies belong to.")] = None,
    user: Annotated[str | None, typer.Option(help="Owner's email (default: the admin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Write one tracked .eml per recipient (To, Cc and Bcc) and register them.

    The copies carry no Bcc header. Everything outside the HTML part is kept byte for byte.
    """
    raw = message.read_bytes()
    to = recipients(raw)
    if not to:
        raise fail(f"{message}: no recipients in To, Cc or Bcc")
    envelope = Envelope(
        sender=parseaddr(header(raw, "From") or "")[1],
        subject=header(raw, "Subject") or "",
        campaign=campaign,
        sent_at=accounts.now_us(),
    )
    with open_db(settings) as db:
        user_id = acting_user(db, user)
        modes = db.read(privacy_store.modes, user_id, to)
        try:
            tracked = track_eml(
                Signer(settings.secrets), settings.public_url, envelope, to, without_bcc(raw),
                modes=modes,
            )  # fmt: skip
        except InstrumentError as exc:
            raise fail(f"{message}: cannot be instrumented: {exc}") from exc
        registered = [t.message for t in tracked if t.message is not None]
        db.write(queries.save_messages, user_id, registered, now=accounts.now_us())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, copy in enumerate(tracked, start=1):
        path = out / _filename(index, copy.recipient)
        path.write_bytes(copy.eml or b"")
        message_id = copy.message.id if copy.message is not None else None  # tracking is off
        written.append({"id": message_id, "recipient": copy.recipient, "file": str(path)})
    if as_json:
        print_json({"messages": written})
    else:
        for item in written:
            console.print(
                f"{item['recipient']}  →  {item['file']}  (message {item['id']})", highlight=False
            )
