"""One recipient's copy of a campaign: the message as it goes upstream (RFC 5322, CRLF).

Headers that may carry non-ASCII text (From, To, Subject) are written by the stdlib's SMTP
policy, which encodes them as RFC 2047 words and folds them; the rest are plain ASCII and
written as they are, so that a long ``List-Unsubscribe`` URL is never folded or encoded.
Bodies are quoted-printable by ``binascii`` (C): the ``email`` package's own encoder costs
about 5 ms for a 100 KB HTML body, more than instrumenting it.
"""

from __future__ import annotations

import binascii
import secrets
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.utils import format_datetime, make_msgid

_POLICY = policy.SMTP
CRLF = b"\r\n"


def one_line(text: str) -> str:
    """Text for a header: white space runs, line breaks included, become one space."""
    return " ".join(text.split())


def compose(
    sender: Address,
    to: Address,
    subject: str,
    html: str,
    text: str | None,
    *,
    unsubscribe_url: str,
    date: datetime,
) -> bytes:
    """A complete message: multipart/alternative when there is a text body, else HTML alone.

    ``List-Unsubscribe`` with ``List-Unsubscribe-Post`` is RFC 8058's one-click unsubscribe,
    which Gmail and Yahoo require of bulk senders: their button POSTs to the URL.
    """
    headers = [
        b"Date: " + format_datetime(date).encode() + CRLF,
        _fold("From", str(sender)),
        _fold("To", str(to)),
        _fold("Subject", one_line(subject)),
        b"Message-ID: " + make_msgid(domain=sender.domain).encode() + CRLF,
        b"MIME-Version: 1.0" + CRLF,
        b"List-Unsubscribe: <" + unsubscribe_url.encode("ascii") + b">" + CRLF,
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" + CRLF,
    ]
    html_part = _part("html", html)
    if text is None:
        return b"".join(headers) + html_part + (b"" if html_part.endswith(CRLF) else CRLF)
    # "=_" never occurs in quoted-printable text, so the boundary cannot occur in a body.
    boundary = b"=_" + secrets.token_hex(16).encode()
    return b"".join(
        [
            *headers,
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"' + CRLF,
            CRLF,
            b"--" + boundary + CRLF,
            _part("plain", text),
            CRLF + b"--" + boundary + CRLF,
            html_part,
            CRLF + b"--" + boundary + b"--" + CRLF,
        ]
    )


def _fold(name: str, value: str) -> bytes:
    folded: str = _POLICY.header_factory(name, value).fold(policy=_POLICY)
    return folded.encode("ascii")


def _part(subtype: str, body: str) -> bytes:
    """A text part's headers and its body, quoted-printable UTF-8 with CRLF line ends."""
    data = body.replace("\r\n", "\n").replace("\r", "\n").encode()
    encoded = binascii.b2a_qp(data, istext=True).replace(b"\n", CRLF)
    return (
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"' + CRLF
        + b"Content-Transfer-Encoding: quoted-printable" + CRLF
        + CRLF
        + encoded
    )  # fmt: skip
