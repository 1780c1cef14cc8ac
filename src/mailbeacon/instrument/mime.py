"""Find a message's HTML bodies in its raw bytes and replace only those bytes.

Nothing outside an HTML body is parsed and written back: headers keep their folding, and
boundaries, other parts and line endings stay byte for byte as they came. A DKIM signature
over the headers therefore stays valid, though one over the body cannot (RESEARCH.md §4: sign
after instrumenting). The stdlib ``email`` package reads each part's header block (parameters,
RFC 2231); finding the parts, and decoding and encoding bodies, is done here on offsets.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

MAX_PARTS = 1000
MAX_DEPTH = 30  # multiparts inside multiparts

TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})

_HEADER_FIELDS = re.compile(rb"(?:[!-9;-~]++[ \t]*+:[^\n]*+(?:\n|\Z)(?:[ \t][^\n]*+(?:\n|\Z))*+)*+")
_HEADER_FIELD = re.compile(rb"([!-9;-~]++)[ \t]*+:([^\n]*+(?:\n|\Z)(?:[ \t][^\n]*+(?:\n|\Z))*+)")
_LINE_BREAK = re.compile(rb"\r?\n")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_QP_SPECIAL = re.compile(rb"[^\t\x20-\x3c\x3e-\x7e]")
_QP_LINE = 76
_BASE64_LINE = 76


class InstrumentError(Exception):
    """Why a message cannot be instrumented (the text is shown to users)."""


@dataclass(frozen=True, slots=True)
class HtmlPart:
    """Where one HTML body sits in the raw message, and how it is encoded."""

    start: int  # offset of the body's first byte
    end: int  # offset just past its last byte
    charset: str
    transfer_encoding: str  # one of TRANSFER_ENCODINGS
    eol: bytes  # the part's line ending: b"\r\n" or b"\n"


def instrument_message(raw: bytes, rewrite: Callable[[str], str]) -> bytes:
    """The message with ``rewrite`` applied to the text of each HTML body.

    Each body is re-encoded in its own charset and transfer encoding; characters the charset
    cannot hold become HTML character references. A message without HTML comes back as is.
    """
    pieces: list[bytes] = []
    last = 0
    for part in html_parts(raw):
        body = raw[part.start : part.end]
        text = _decode(part, body)
        rewritten = rewrite(text)
        if rewritten == text:
            continue
        pieces += (raw[last : part.start], _encode(part, rewritten, body))
        last = part.end
    if not pieces:
        return raw
    pieces.append(raw[last:])
    return b"".join(pieces)


def html_parts(raw: bytes) -> list[HtmlPart]:
    """Every HTML body a reader sees, in order.

    Attachments are left out: parts with ``Content-Disposition: attachment`` or a file name,
    everything inside an attached message (``message/rfc822``), and parts in a transfer
    encoding RFC 2045 §6.4 says to treat as opaque data.
    """
    if _split_headers(raw, 0, len(raw))[0] == 0:
        raise InstrumentError("The message does not start with a header field.")
    walk = _Walk(raw)
    walk.entity(0, len(raw), depth=0, default_type="text/plain")
    return walk.found


def recipients(raw: bytes) -> list[str]:
    """The addresses in To, Cc and Bcc, each once (compared without case), in order."""
    values = [
        _unfold(value) for name, value, _, _ in _top_fields(raw) if name in ("to", "cc", "bcc")
    ]
    seen: set[str] = set()
    addresses = []
    for _, address in getaddresses(values):
        if address and address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def without_bcc(raw: bytes) -> bytes:
    """The message without its Bcc header fields, every other byte as it was."""
    return without_fields(raw, lambda name: name == "bcc")


def without_fields(raw: bytes, drop: Callable[[str], bool]) -> bytes:
    """The message without the header fields whose lowercased name ``drop`` accepts, every
    other byte as it was."""
    cuts = [(start, end) for name, _, start, end in _top_fields(raw) if drop(name)]
    if not cuts:
        return raw
    pieces = []
    last = 0
    for start, end in cuts:
        pieces.append(raw[last:start])
        last = end
    pieces.append(raw[last:])
    return b"".join(pieces)


def header(raw: bytes, name: str) -> str | None:
    """The first ``name`` header field's value, unfolded and with RFC 2047 encoded words decoded."""
    wanted = name.lower()
    for field_name, value, _, _ in _top_fields(raw):
        if field_name == wanted:
            text = _unfold(value)
            try:
                return str(make_header(decode_header(text)))
            except (MessageError, LookupError, ValueError):  # unknown charset, broken encoding
                return text
    return None


class _Walk:
    """A depth-first walk over the MIME tree that notes each HTML body."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.found: list[HtmlPart] = []
        self.parts = 0

    def entity(self, start: int, end: int, depth: int, default_type: str) -> None:
        headers_end, body_start, eol = _split_headers(self.raw, start, end)
        fields = BytesHeaderParser(policy=compat32).parsebytes(self.raw[start:headers_end])
        fields.set_default_type(default_type)
        content_type = fields.get_content_type()
        if content_type.startswith("multipart/"):
            self.multipart(fields, content_type, body_start, end, depth)
        elif content_type == "text/html" and not _is_attachment(fields):
            encoding = str(fields.get("content-transfer-encoding", "")).strip().lower() or "7bit"
            if encoding in TRANSFER_ENCODINGS:
                charset = fields.get_content_charset() or "us-ascii"
                self.found.append(HtmlPart(body_start, end, charset, encoding, eol))

    def multipart(
        self, fields: Message, content_type: str, start: int, end: int, depth: int
    ) -> None:
        if depth >= MAX_DEPTH:
            raise InstrumentError(f"The message nests multiparts more than {MAX_DEPTH} deep.")
        boundary = fields.get_boundary()
        if not boundary:
            raise InstrumentError(f"A {content_type} part has no boundary parameter.")
        try:
            delimiter = boundary.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise InstrumentError(f"A {content_type} part has an unreadable boundary.") from exc
        child_type = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        for part_start, part_end in _split_multipart(self.raw, start, end, delimiter):
            self.parts += 1
            if self.parts > MAX_PARTS:
                raise InstrumentError(f"The message has more than {MAX_PARTS} parts.")
            self.entity(part_start, part_end, depth + 1, child_type)


def _split_headers(raw: bytes, start: int, end: int) -> tuple[int, int, bytes]:
    """Where an entity's header fields end, where its body starts, and its line ending.

    The body starts after the first empty line or, when a line that is not a header field comes
    first, at that line (as the stdlib parser and mail clients read it).
    """
    headers = _HEADER_FIELDS.match(raw, start, end)
    headers_end = start if headers is None else headers.end()
    blank = _LINE_BREAK.match(raw, headers_end, end)
    if blank is not None:
        return headers_end, blank.end(), blank.group()
    newline = raw.find(b"\n", start, end)
    eol = b"\n" if newline > start and raw[newline - 1] != ord("\r") else b"\r\n"
    return headers_end, headers_end, eol


def _split_multipart(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The byte ranges of a multipart body's parts (RFC 2046 §5.1.1).

    The line break before a delimiter belongs to the delimiter, not to the part. A missing close
    delimiter ends the last part at the end of the body, as mail clients read it.
    """
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*+(?:\r?\n|\Z)")
    ranges = []
    part_start = None
    seen = False
    for line in delimiter.finditer(raw, start, end):
        seen = True
        if part_start is not None:
            ranges.append((part_start, max(part_start, _before_line_break(raw, line.start()))))
        if line.group(1):
            part_start = None
            break
        part_start = line.end()
    if part_start is not None:
        ranges.append((part_start, end))
    if not seen:
        raise InstrumentError(f"The multipart boundary {_show(boundary)} never appears.")
    if not ranges:
        raise InstrumentError(f"The multipart with boundary {_show(boundary)} has no parts.")
    return ranges


def _before_line_break(raw: bytes, at: int) -> int:
    if raw[at - 2 : at] == b"\r\n":
        return at - 2
    if raw[at - 1 : at] == b"\n":
        return at - 1
    return at


def _show(boundary: bytes) -> str:
    return repr(boundary.decode("ascii", "replace"))


def _is_attachment(fields: Message) -> bool:
    return fields.get_content_disposition() == "attachment" or fields.get_filename() is not None


def _top_fields(raw: bytes) -> list[tuple[str, bytes, int, int]]:
    """The message's header fields: lowercased name, raw value, and the field's byte range."""
    headers_end = _split_headers(raw, 0, len(raw))[0]
    fields = []
    pos = 0
    while pos < headers_end:
        field = _HEADER_FIELD.match(raw, pos, headers_end)
        if field is None:  # cannot happen: _split_headers matched these same fields
            break
        name = field.group(1).decode("ascii").lower()
        fields.append((name, field.group(2), field.start(), field.end()))
        pos = field.end()
    return fields


def _unfold(value: bytes) -> str:
    return _FOLD.sub(b"", value).strip(b" \t\r\n").decode("utf-8", "replace")


def _decode(part: HtmlPart, body: bytes) -> str:
    if part.transfer_encoding == "quoted-printable":
        data = binascii.a2b_qp(body)
    elif part.transfer_encoding == "base64":
        data = _base64_decode(body)
    else:
        data = body
    try:
        return data.decode(part.charset, "surrogateescape")
    except LookupError as exc:
        raise InstrumentError(f"The HTML part's charset {part.charset!r} is unknown.") from exc
    except ValueError as exc:  # codecs such as "idna" that cannot keep undecodable bytes
        raise InstrumentError(f"The HTML part cannot be read as {part.charset!r}.") from exc


def _encode(part: HtmlPart, text: str, original: bytes) -> bytes:
    try:
        data = text.encode(part.charset, _KEEP_BYTES_OR_REFERENCE)
    except ValueError as exc:  # UTF-16 and the like cannot take back a stray byte
        raise InstrumentError(f"The HTML part cannot be written as {part.charset!r}.") from exc
    if part.transfer_encoding == "quoted-printable":
        return _qp_encode(data, part.eol)
    if part.transfer_encoding == "base64":
        padding = original[len(original.rstrip(b" \t\r\n")) :]
        return _base64_encode(data, part.eol) + padding
    return data


def _keep_bytes_or_reference(error: UnicodeError) -> tuple[str | bytes, int]:
    """Undecodable input bytes go back as they came; a new character the charset lacks
    becomes an HTML character reference."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    code = ord(error.object[error.start])
    if 0xDC80 <= code <= 0xDCFF:  # a byte that "surrogateescape" kept while decoding
        return bytes([code - 0xDC00]), error.start + 1
    return f"&#{code};", error.start + 1


_KEEP_BYTES_OR_REFERENCE = "mailbeacon.keep-bytes-or-reference"
codecs.register_error(_KEEP_BYTES_OR_REFERENCE, _keep_bytes_or_reference)


def _base64_decode(body: bytes) -> bytes:
    data = body.translate(None, b" \t\r\n")
    if len(data) % 4 and not data.endswith(b"="):
        data += b"=" * (-len(data) % 4)  # padding is often left off; the data is still whole
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error as exc:
        raise InstrumentError("The HTML part's base64 body cannot be decoded.") from exc


def _base64_encode(data: bytes, eol: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return eol.join(encoded[at : at + _BASE64_LINE] for at in range(0, len(encoded), _BASE64_LINE))


def _qp_encode(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7), every line at most 76 characters, hard line breaks
    written as ``eol``."""
    return eol.join(_qp_line(line, eol) for line in _LINE_BREAK.split(data))


def _qp_line(line: bytes, eol: bytes) -> bytes:
    encoded = _QP_SPECIAL.sub(lambda byte: b"=%02X" % byte.group()[0], line)
    if encoded[-1:] in (b" ", b"\t"):  # trailing white space is stripped in transport
        encoded = encoded[:-1] + b"=%02X" % encoded[-1]
    if encoded.startswith(b"From "):  # mbox writers mangle such lines into ">From "
        encoded = b"=46" + encoded[1:]
    if len(encoded) <= _QP_LINE:
        return encoded
    chunks = []
    start = 0
    while len(encoded) - start > _QP_LINE:
        cut = start + _QP_LINE - 1  # room for the "=" of a soft line break
        escape_at = encoded.rfind(b"=", cut - 2, cut)
        if escape_at >= 0:  # do not split an "=XX"
            cut = escape_at
        chunks.append(encoded[start:cut] + b"=")
        start = cut
    chunks.append(encoded[start:])
    return eol.join(chunks)
