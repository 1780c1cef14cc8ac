"""What the relay does with one submitted message, between AUTH and the outbound queue.

Each envelope recipient (RCPT TO: To, Cc and Bcc alike) gets a copy of their own, queued in one
transaction with the tracked messages it registers; only then is the client told 250, so an
accepted message survives a crash. Our ``X-Mailbeacon-*`` header fields and Bcc are removed from
every copy. A message is tracked when it says ``X-Mailbeacon-Track: yes``, or when its sender
tracks by default and it does not say ``no``; each tracked copy gets its own pixel and links.
A message that asks to be tracked but cannot be instrumented is relayed untracked, with the reason
in the log: the relay never drops mail it could deliver.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import TYPE_CHECKING

import anyio.to_thread

from mailbeacon import accounts, privacy
from mailbeacon.instrument.mime import InstrumentError, header, html_parts, without_fields
from mailbeacon.privacy import MODES, Mode
from mailbeacon.relay.queue import Outgoing, enqueue
from mailbeacon.store import privacy as privacy_store
from mailbeacon.store import queries
from mailbeacon.store.db import Conn
from mailbeacon.store.queries import NewMessage
from mailbeacon.text import single_line
from mailbeacon.tracking.register import Envelope, Tracked, track_eml
from mailbeacon.tracking.tokens import Signer

if TYPE_CHECKING:
    from mailbeacon.web.services import Services

log = logging.getLogger(__name__)

TRACK_HEADER = "X-Mailbeacon-Track"
CAMPAIGN_HEADER = "X-Mailbeacon-Campaign"
_OURS = "x-mailbeacon-"
_BLIND = frozenset({"bcc", "resent-bcc"})
_YES = frozenset({"yes", "on", "true", "1"})
_NO = frozenset({"no", "off", "false", "0"})
MAX_CAMPAIGN = 200  # as in the API
MAX_SUBJECT = 998  # the longest header line RFC 5322 allows


@dataclass(frozen=True)
class Submission:
    """A message as the client handed it over."""

    user_id: int
    mail_from: str
    rcpt_tos: Sequence[str]  # each once
    raw: bytes  # CRLF line ends, dot-unstuffed
    client_ip: str  # the sender's own views of their mail, from here, count as ``self``


@dataclass(frozen=True)
class Relayed:
    """What was queued for one submission."""

    copies: Sequence[Outgoing]  # one per recipient
    messages: Sequence[NewMessage]  # the tracked messages, beside their copies; none if untracked
    message_id: str  # its Message-ID, for the log
    untracked_because: str | None = None  # why a message that asked for tracking went without

    @property
    def tracked(self) -> bool:
        return bool(self.messages)


def refusal(raw: bytes) -> str | None:
    """Why a message cannot be relayed at all, or None.

    A bare CR or LF is how SMTP smuggling hides a second message inside the first: one server
    reads ``<LF>.<LF>`` (or ``<CR>.<CR>``…) as the end of the data, the next as part of it
    (SEC Consult, December 2023; aiosmtpd CVE-2024-27305). aiosmtpd ≥ 1.4.5 ends DATA only at
    ``<CRLF>.<CRLF>``, but it passes the rest through, and the copies go upstream as they came;
    refusing them, as Postfix's ``smtpd_forbid_bare_newline`` does, leaves nothing to smuggle.
    Mail clients end every line with CRLF. A NUL in the header fields would cut a header short
    in C-based software downstream (and RFC 5322 forbids it).
    """
    rest = raw.replace(b"\r\n", b"")
    if b"\r" in rest or b"\n" in rest:
        return "The message has a bare CR or LF: every line must end with CRLF (RFC 5321, 2.3.8)."
    end = raw.find(b"\r\n\r\n")
    if b"\0" in raw[: len(raw) if end < 0 else end]:
        return "The message's header has a NUL character."
    return None


def message_id(raw: bytes) -> str:
    return single_line(header(raw, "Message-ID") or "", 200) or "(no Message-ID)"


def wants_tracking(raw: bytes, default: bool) -> bool:
    """``X-Mailbeacon-Track: yes`` (or a tracking mode) or ``no``; without it (or with a value
    we do not know), the sender's default."""
    value = header(raw, TRACK_HEADER)
    if value is None:
        return default
    answer = value.strip().lower()
    if answer in _YES or (answer in MODES and answer != "off"):
        return True
    if answer in _NO or answer == "off":
        return False
    log.warning("%s: %r is neither yes nor no; the sender's default applies", TRACK_HEADER, value)
    return default


def asked_mode(raw: bytes) -> Mode | None:
    """The tracking mode a submission asks for (``X-Mailbeacon-Track: pseudonymous``…), if any:
    the strictest of it and the user's and each recipient's applies."""
    value = (header(raw, TRACK_HEADER) or "").strip().lower()
    return privacy.mode(value) if value in MODES else None


def prepare(
    signer: Signer,
    public_url: str,
    submission: Submission,
    *,
    track_default: bool,
    modes: Mapping[str, Mode],
    now: int,
) -> Relayed:
    """The copies to queue (and the tracked messages to register) for one submission, each
    recipient's in their tracking mode."""
    raw = submission.raw
    found_id = message_id(raw)
    clean = without_fields(raw, lambda name: name.startswith(_OURS) or name in _BLIND)
    if not wants_tracking(raw, track_default):
        return Relayed(_untracked(submission, clean), (), found_id)
    try:
        tracked = _track(signer, public_url, submission, clean=clean, modes=modes, now=now)
    except InstrumentError as exc:
        return Relayed(_untracked(submission, clean), (), found_id, untracked_because=str(exc))
    except Exception as exc:  # a bug of ours must not cost the sender their mail
        log.exception("instrumenting %s failed", found_id)
        reason = f"Instrumenting it failed ({type(exc).__name__})."
        return Relayed(_untracked(submission, clean), (), found_id, untracked_because=reason)
    copies = [
        Outgoing(
            submission.user_id, t.message.id if t.message else None, submission.mail_from,
            t.recipient, eml,
        )
        for t, eml in tracked
    ]  # fmt: skip
    return Relayed(copies, [t.message for t, _ in tracked if t.message is not None], found_id)


def store(conn: Conn, user_id: int, relayed: Relayed, *, now: int) -> list[int]:
    """Register the tracked messages and queue every copy, in the caller's transaction: a copy
    is never queued for a message that is not registered, nor the reverse."""
    if relayed.messages:
        queries.save_messages(conn, user_id, relayed.messages, now=now)
    return enqueue(conn, relayed.copies, now=now)


async def submit(services: Services, submission: Submission) -> Relayed:
    """Queue a submission durably (committed when this returns), then wake the deliverer."""
    track_default = await services.read(queries.track_default, submission.user_id)
    modes = await services.read(
        privacy_store.modes, submission.user_id, submission.rcpt_tos, asked_mode(submission.raw)
    )
    # Instrumenting is CPU work on whole messages: off the event loop that serves the pixel.
    relayed = await anyio.to_thread.run_sync(
        functools.partial(
            prepare,
            services.signer,
            services.settings.public_url,
            submission,
            track_default=track_default,
            modes=modes,
            now=accounts.now_us(),
        )
    )
    await services.writer.run(store, submission.user_id, relayed, now=accounts.now_us())
    if relayed.untracked_because is not None:
        log.warning(
            "relayed %s untracked (user %d asked for tracking): %s",
            relayed.message_id, submission.user_id, relayed.untracked_because,
        )  # fmt: skip
    log.info(
        "queued %s from user %d: %d %s cop%s",
        relayed.message_id, submission.user_id, len(relayed.copies),
        "tracked" if relayed.tracked else "untracked", "y" if len(relayed.copies) == 1 else "ies",
    )  # fmt: skip
    services.deliverer.poke()
    return relayed


def _track(
    signer: Signer,
    public_url: str,
    submission: Submission,
    *,
    clean: bytes,
    modes: Mapping[str, Mode],
    now: int,
) -> list[tuple[Tracked, bytes]]:
    raw = submission.raw
    if not html_parts(clean):
        raise InstrumentError("The message has no HTML part to carry the pixel.")
    envelope = Envelope(
        sender=parseaddr(header(clean, "From") or "")[1] or submission.mail_from,
        subject=single_line(header(clean, "Subject") or "", MAX_SUBJECT),
        campaign=single_line(header(raw, CAMPAIGN_HEADER) or "", MAX_CAMPAIGN) or None,
        sent_at=now,  # the deliverer sets it again when the upstream server accepts the copy
        sender_ip=submission.client_ip,
    )
    tracked = track_eml(signer, public_url, envelope, submission.rcpt_tos, clean, modes=modes)
    copies = [(t, t.eml) for t in tracked if t.eml is not None]
    if len(copies) != len(tracked):
        raise RuntimeError("track_eml returned a copy without its message")
    return copies


def _untracked(submission: Submission, clean: bytes) -> list[Outgoing]:
    return [
        Outgoing(submission.user_id, None, submission.mail_from, rcpt, clean)
        for rcpt in submission.rcpt_tos
    ]
