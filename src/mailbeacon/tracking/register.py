"""Register tracked messages: one copy per recipient, each with its own pixel and link tokens.

Registration is pure (ids, tokens, rewritten HTML); the caller stores the result with
``queries.save_messages`` in one transaction, through the writer or from the CLI. Each
recipient's copy is made in the tracking mode the caller decided for them (``privacy``): with
``off`` the copy is left as it is and nothing is registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from mailbeacon.instrument.html import rewrite_html
from mailbeacon.instrument.mime import instrument_message
from mailbeacon.privacy import ANONYMOUS, Mode
from mailbeacon.store.queries import NewMessage
from mailbeacon.tracking.tokens import Signer, new_message_id

MAX_LINKS = 65536  # a click token has two bytes for the link's position
MAX_URL = 8192  # longer URLs are left as they are rather than stored


# \s is what str.isspace() says is white space (both use Py_UNICODE_ISSPACE).
_UNCLEAN = re.compile(r"[\s\x00-\x1f\x7f]")


def _is_clean(url: str) -> bool:
    """No whitespace or control characters: such a URL is left alone, never put in a header."""
    return _UNCLEAN.search(url) is None


@dataclass(frozen=True)
class Envelope:
    sender: str
    subject: str
    campaign: str | None
    sent_at: int  # microseconds since the epoch
    sender_ip: str | None = None  # where it was submitted from: the sender's own views are self


@dataclass(frozen=True)
class Tracked:
    """One recipient's copy: tracked, or left as it was (``message`` None: tracking is off)."""

    recipient: str
    message: NewMessage | None
    pixel_url: str | None
    tracked_urls: Sequence[str]  # by link position, beside message.links
    html: str | None = None  # the rewritten HTML part, for the API
    eml: bytes | None = None  # the rewritten message, for `mailbeacon instrument`


class Tracker:
    """Mints the URLs of one message: its pixel and one redirect per distinct link."""

    def __init__(
        self, signer: Signer, public_url: str, message_id: str, mode: Mode = "full"
    ) -> None:
        self.signer = signer
        self.public_url = public_url
        self.message_id = message_id
        self.mode = mode
        self.links: list[str] = []
        self.tracked: list[str] = []
        self._position: dict[str, int] = {}

    @property
    def pixel_url(self) -> str:
        return f"{self.public_url}/o/{self.signer.sign('o', self.message_id)}.gif"

    def track_link(self, url: str) -> str | None:
        if self.mode == "off":
            return None
        position = self._position.get(url)
        if position is None:
            if len(self.links) >= MAX_LINKS or len(url) > MAX_URL or not _is_clean(url):
                return None
            position = self._position[url] = len(self.links)
            self.links.append(url)
            token = self.signer.sign("c", self.message_id, position)
            self.tracked.append(f"{self.public_url}/c/{token}")
        return self.tracked[position]

    def rewrite(self, html: str) -> str:
        if self.mode == "off":
            return html
        return rewrite_html(html, self.pixel_url, self.track_link)

    def result(
        self,
        recipient: str,
        envelope: Envelope,
        *,
        html: str | None = None,
        eml: bytes | None = None,
    ) -> Tracked:
        if self.mode == "off":
            return Tracked(recipient, None, None, (), html=html, eml=eml)
        message = self.message(recipient, envelope)
        return Tracked(recipient, message, self.pixel_url, tuple(self.tracked), html=html, eml=eml)

    def message(self, recipient: str, envelope: Envelope) -> NewMessage:
        """The message to register (with tracking off, one that only its unsubscribe link and
        its delivery name: a campaign's)."""
        return NewMessage(
            id=self.message_id,
            recipient=ANONYMOUS if self.mode == "anonymous" else recipient,
            campaign=envelope.campaign,
            sender=envelope.sender,
            subject=envelope.subject,
            sent_at=envelope.sent_at,
            links=tuple(self.links),
            sender_ip=envelope.sender_ip,
            tracking=self.mode,
        )


def _trackers(
    signer: Signer, public_url: str, recipients: Sequence[str], modes: Mapping[str, Mode]
) -> Iterator[tuple[Tracker, str]]:
    """A fresh message, and so a fresh set of tokens, for each recipient, in their mode (full
    for any not in ``modes``)."""
    for recipient in recipients:
        mode = modes.get(recipient, "full")
        yield Tracker(signer, public_url, new_message_id(), mode), recipient


def track_html(
    signer: Signer,
    public_url: str,
    envelope: Envelope,
    recipients: Sequence[str],
    html: str,
    *,
    modes: Mapping[str, Mode] = MappingProxyType({}),
) -> list[Tracked]:
    """A tracked copy of an HTML body for each recipient."""
    return [
        tracker.result(recipient, envelope, html=tracker.rewrite(html))
        for tracker, recipient in _trackers(signer, public_url, recipients, modes)
    ]


def track_eml(
    signer: Signer,
    public_url: str,
    envelope: Envelope,
    recipients: Sequence[str],
    raw: bytes,
    *,
    modes: Mapping[str, Mode] = MappingProxyType({}),
) -> list[Tracked]:
    """A tracked copy of a whole message (RFC 5322 bytes) for each recipient."""
    return [
        tracker.result(
            recipient,
            envelope,
            eml=raw if tracker.mode == "off" else instrument_message(raw, tracker.rewrite),
        )
        for tracker, recipient in _trackers(signer, public_url, recipients, modes)
    ]
