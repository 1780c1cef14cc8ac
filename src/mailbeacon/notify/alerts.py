"""Alert emails to senders: "your email was opened", sent through the upstream SMTP server.

A user chooses (``alerts``): ``first`` (the default: once a message, on its recipient's first
open or click), ``every`` (each open, and a click that came before any open), ``digest`` (those
of ``every`` gathered into one email an hour) or ``off``. Only a person's opens and clicks
alert, never a machine's or the sender's own, and a muted message never does. Alerts are queued
in the outbound queue in the transaction that publishes their event, so they are as durable as
any other mail; without an upstream server they wait in the queue.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Literal, get_args

from mailbeacon.notify.events import Client, HitData
from mailbeacon.relay.queue import Outgoing, enqueue
from mailbeacon.reports import iso
from mailbeacon.store import notify as store
from mailbeacon.store.db import Conn
from mailbeacon.tracking.tokens import Signer

Mode = Literal["first", "every", "digest", "off"]
MODES: tuple[str, ...] = get_args(Mode)
DIGEST_EVERY = 3600 * 1_000_000  # µs: at most one digest an hour
DIGEST_MAX = 200  # lines in one digest; the rest are counted
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


@dataclass(frozen=True)
class Mailer:
    """Where alerts come from and what their links point at."""

    sender: str  # --alerts-from
    public_url: str
    signer: Signer  # signs each alert's mute link

    def mute_url(self, message_id: str) -> str:
        return f"{self.public_url}/m/{self.signer.sign('m', message_id)}"


def alerts(mode: str, *, first_engagement: bool, event_type: str) -> Literal["now", "digest", ""]:
    """What a person's open or click of a (not muted) message means for its sender's alerts."""
    if mode == "first":
        return "now" if first_engagement else ""
    counts = event_type == "email.opened" or first_engagement  # a click before any open
    if mode == "every" and counts:
        return "now"
    if mode == "digest" and counts:
        return "digest"
    return ""


def _clean(text: str) -> str:
    """A header-safe, one-line version of text that came from mail or from a request."""
    return _CONTROL.sub(" ", text).strip()


def duration(seconds: float) -> str:
    """A wait as people say it: 45 s, 12 min, 2 h 5 min, 3 d 1 h 0 min."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{max(seconds, 0):.0f} s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    return " ".join(p for p in parts if p)


def device(client: Client) -> str:
    """Apple Mail (mobile, iOS); an unknown client."""
    name = client.get("name") or "an unknown client"
    details = ", ".join(v for v in (client.get("type", ""), client.get("os", "")) if v)
    return f"{name} ({details})" if details else name


def summary(event_type: str, created_at: int, data: dict[str, Any]) -> dict[str, Any]:
    """An event as a person reads it in a list (the dashboard's feed, ``mailbeacon watch``):
    what happened, when, to whom and about what, on which client (or why it bounced), and how
    long after sending."""
    what = event_type.removeprefix("email.")
    if event_type == "email.hit":
        what += f" ({data['verdict']})"
    seconds = data.get("seconds_after_sending")
    return {
        "what": what,
        "time": iso(created_at),
        "recipient": data.get("recipient", ""),
        "subject": data.get("subject", ""),
        "campaign": data.get("campaign"),
        "message_id": data.get("message_id"),
        "device": device(data["client"]) if "client" in data else data.get("error", ""),
        "after": duration(seconds) if seconds is not None else "",
    }


def describe(data: HitData) -> str:
    """One alert's lines: who, what, when, on what."""
    action = "opened" if data["kind"] == "open" else f"clicked {data.get('url') or 'a link'} in"
    lines = [
        f"{_clean(data['recipient'])} {action} “{_clean(data['subject'])}”.",
        "",
        f"  When:     {data['time'].replace('T', ' ')[:19]} UTC, "
        f"{duration(data['seconds_after_sending'])} after sending",
        f"  Client:   {_clean(device(data['client']))}",
    ]
    if data["campaign"]:
        lines.append(f"  Campaign: {_clean(data['campaign'])}")
    lines.append(f"  Details:  mailbeacon explain {data['message_id']}")
    return "\n".join(lines)


def tell_owner(
    conn: Conn, user_id: int, subject: str, text: str, *, mailer: Mailer, now: int
) -> None:
    """Queue an email to the user, in the caller's transaction."""
    owner = store.user_email(conn, user_id)
    if owner is None:
        return
    mail = EmailMessage(policy=SMTP)
    mail["From"] = mailer.sender
    mail["To"] = owner
    mail["Subject"] = _clean(subject)[:200]
    mail["Date"] = formatdate(now / 1e6, usegmt=True)
    mail["Message-ID"] = make_msgid("alert", parseaddr(mailer.sender)[1].rpartition("@")[2])
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    mail.set_content(text + f"\n\n-- \nmailbeacon at {mailer.public_url}\n")
    sender = parseaddr(mailer.sender)[1]
    enqueue(conn, [Outgoing(user_id, None, sender, owner, mail.as_bytes())], now=now)


def alert_now(conn: Conn, user_id: int, data: HitData, *, mailer: Mailer, now: int) -> None:
    verb = "Opened" if data["kind"] == "open" else "Clicked"
    subject = f"{verb}: “{_clean(data['subject'])}” by {_clean(data['recipient'])}"
    text = (
        describe(data)
        + f"\n\nNo more alerts for this message: {mailer.mute_url(data['message_id'])}"
    )
    tell_owner(conn, user_id, subject, text, mailer=mailer, now=now)


def send_digests(conn: Conn, *, mailer: Mailer, now: int) -> int:
    """Send each user whose oldest waiting alert is an hour old their digest; how many went."""
    sent = 0
    for user_id in store.digests_due(conn, now - DIGEST_EVERY):
        event_ids = store.digest_items(conn, user_id)
        items = [json.loads(data) for _, data in store.event_data(conn, event_ids[:DIGEST_MAX])]
        body = "\n\n".join(describe(d) for d in items)
        if len(event_ids) > DIGEST_MAX:
            body += f"\n\n… and {len(event_ids) - DIGEST_MAX} more."
        subject = f"{len(event_ids)} open{'s' if len(event_ids) != 1 else ''} in the last hour"
        tell_owner(conn, user_id, subject, body, mailer=mailer, now=now)
        store.clear_digest(conn, user_id, event_ids)
        sent += 1
    return sent


def queue_alert(
    conn: Conn,
    user_id: int,
    event_id: int,
    data: HitData,
    *,
    when: Literal["now", "digest"],
    mailer: Mailer,
    now: int,
) -> None:
    if when == "now":
        alert_now(conn, user_id, data, mailer=mailer, now=now)
    else:
        store.add_to_digest(conn, event_id, user_id, now)
