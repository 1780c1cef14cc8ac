from __future__ import annotations

import base64
import email
import functools
import quopri
import re
from email.message import Message
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbeacon.instrument.html import rewrite_html
from mailbeacon.instrument.mime import (
    InstrumentError,
    header,
    html_parts,
    instrument_message,
    recipients,
    without_bcc,
)

CORPUS = Path(__file__).parent / "corpus" / "mime"
FILES = sorted(path.name for path in CORPUS.glob("*.eml"))
WITH_HTML = [name for name in FILES if name != "text-only.eml"]

PIXEL_URL = "https://t.test/o/abc.gif"


def track(url: str) -> str:
    return "https://t.test/c/" + str(len(url))


rewrite = functools.partial(rewrite_html, pixel_url=PIXEL_URL, track_link=track)


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def outside_html(raw: bytes) -> list[bytes]:
    """The message cut at its HTML bodies: everything that must not change."""
    pieces, last = [], 0
    for part in html_parts(raw):
        pieces.append(raw[last : part.start])
        last = part.end
    pieces.append(raw[last:])
    return pieces


def html_bodies(raw: bytes) -> list[Message]:
    """The HTML body parts as the stdlib parser sees them (a second opinion)."""
    message = email.message_from_bytes(raw, policy=compat32)
    return [
        part
        for part in message.walk()
        if part.get_content_type() == "text/html" and part.get_filename() is None
    ]


def transfer_decoded(body: bytes, transfer_encoding: str) -> bytes:
    if transfer_encoding == "quoted-printable":
        return quopri.decodestring(body)
    if transfer_encoding == "base64":
        return base64.b64decode(body)
    return body


def text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "us-ascii").replace("\r\n", "\n")


def test_the_corpus_is_all_there() -> None:
    assert len(FILES) >= 11
    assert b"\r\n" in corpus("alternative-utf8-qp-crlf.eml")  # not normalised by a checkout


# Round trip over the corpus


@pytest.mark.parametrize("name", FILES)
def test_it_preserves_everything_outside_the_html_parts_byte_for_byte(name: str) -> None:
    raw = corpus(name)
    instrumented = instrument_message(raw, rewrite)
    assert len(html_parts(instrumented)) == len(html_parts(raw))
    assert outside_html(instrumented) == outside_html(raw)


@pytest.mark.parametrize("name", FILES)
def test_it_finds_the_same_html_bodies_as_the_stdlib_parser(name: str) -> None:
    raw = corpus(name)
    found = [
        transfer_decoded(raw[part.start : part.end], part.transfer_encoding)
        for part in html_parts(raw)
    ]
    assert found == [part.get_payload(decode=True) for part in html_bodies(raw)]


@pytest.mark.parametrize("name", WITH_HTML)
def test_it_puts_the_pixel_and_tracked_links_into_every_html_part(name: str) -> None:
    instrumented = instrument_message(corpus(name), rewrite)
    for part in html_bodies(instrumented):
        html = text_of(part)
        assert html.count(PIXEL_URL) == 1
        assert re.search(r"""href=["']https://t\.test/c/""", html, re.IGNORECASE)


@pytest.mark.parametrize("name", WITH_HTML)
def test_it_encodes_the_rewritten_text_in_the_parts_own_charset_and_encoding(name: str) -> None:
    raw = corpus(name)
    instrumented = instrument_message(raw, rewrite)
    before, after = html_bodies(raw), html_bodies(instrumented)
    for old, new in zip(before, after, strict=True):
        assert new.get_content_charset() == old.get_content_charset()
        assert new["Content-Transfer-Encoding"] == old["Content-Transfer-Encoding"]
        assert text_of(new) == rewrite(text_of(old))


@pytest.mark.parametrize("name", WITH_HTML)
def test_it_writes_encoded_lines_of_at_most_76_characters(name: str) -> None:
    instrumented = instrument_message(corpus(name), rewrite)
    for part in html_parts(instrumented):
        if part.transfer_encoding in ("quoted-printable", "base64"):
            body = instrumented[part.start : part.end]
            assert max(len(line) for line in body.splitlines()) <= 76


@pytest.mark.parametrize("name", FILES)
def test_it_returns_the_message_unchanged_when_the_rewrite_changes_nothing(name: str) -> None:
    raw = corpus(name)
    assert instrument_message(raw, lambda html: html) is raw


def test_it_leaves_a_message_without_html_byte_identical() -> None:
    raw = corpus("text-only.eml")
    assert html_parts(raw) == []
    assert instrument_message(raw, rewrite) == raw


def test_it_leaves_html_attachments_alone() -> None:
    raw = corpus("mixed-with-attachments.eml")
    instrumented = instrument_message(raw, rewrite)
    parts = email.message_from_bytes(instrumented, policy=compat32).walk()
    attached = next(part for part in parts if part.get_filename() == "invoice-2026-031.html")
    assert "https://billing.example.com/pay/2026-031" in text_of(attached)
    assert PIXEL_URL not in text_of(attached)
    assert len(html_parts(raw)) == 1


def test_it_keeps_accented_letters_in_iso_8859_1() -> None:
    instrumented = instrument_message(corpus("latin1-qp.eml"), rewrite)
    (part,) = html_bodies(instrumented)
    assert part.get_content_charset() == "iso-8859-1"
    assert "sélection d'été © Boutique Müller" in text_of(part)
    assert b"s=E9lection" in instrumented


def test_it_keeps_windows_1252_quotes_and_the_euro_sign() -> None:
    instrumented = instrument_message(corpus("windows1252-8bit.eml"), rewrite)
    (part,) = html_parts(instrumented)
    body = instrumented[part.start : part.end]
    assert b"\x93Early bird\x94 tickets now \x8049" in body
    assert b'<a href="https://t.test/c/38">Book now</a>' in body


def test_it_instruments_a_base64_body() -> None:
    instrumented = instrument_message(corpus("base64-utf8.eml"), rewrite)
    (part,) = html_bodies(instrumented)
    html = text_of(part)
    assert "Welcome aboard 🚀" in html
    assert "Naïve café" in html
    assert f'<img src="{PIXEL_URL}"' in html


def test_it_instruments_a_single_part_html_message() -> None:
    raw = corpus("single-part-html.eml")
    instrumented = instrument_message(raw, rewrite)
    head = raw[: raw.index(b"\n\n") + 2]
    assert instrumented.startswith(head)
    assert instrumented[len(head) :] == rewrite(raw[len(head) :].decode("ascii")).encode("ascii")


def test_it_keeps_crlf_line_endings() -> None:
    instrumented = instrument_message(corpus("alternative-utf8-qp-crlf.eml"), rewrite)
    assert re.search(rb"[^\r]\n", instrumented) is None
    assert PIXEL_URL.encode() in instrumented.replace(b"=\r\n", b"")


def test_it_leaves_long_folded_headers_as_they_are() -> None:
    raw = corpus("long-folded-headers.eml")
    instrumented = instrument_message(raw, rewrite)
    head = raw[: raw.index(b"\n\n")]
    assert b"\n\ts=mail2026;" in head
    assert b"?=\n =?UTF-8?Q?(d=C3=A9tails" in head
    assert instrumented.startswith(head + b"\n\n")


def test_it_writes_characters_the_charset_lacks_as_character_references() -> None:
    instrumented = instrument_message(
        corpus("latin1-qp.eml"), lambda html: html.replace("</body>", "€ ✓</body>")
    )
    (part,) = html_bodies(instrumented)
    assert "&#8364; &#10003;</body>" in text_of(part)


def test_it_keeps_bytes_that_do_not_decode_in_the_charset() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: 8bit\n\n<body>caf\xe9 \xff</body>\n"
    )
    instrumented = instrument_message(raw, rewrite)
    assert b"<body>caf\xe9 \xff<img " in instrumented


def test_it_reads_a_part_without_charset_as_us_ascii() -> None:
    (part,) = html_parts(corpus("related-inline-image.eml"))
    assert part.charset == "us-ascii"


def test_it_reads_a_part_without_transfer_encoding_as_7bit() -> None:
    raw = b"From: a@example.com\nContent-Type: text/html\n\n<body>x</body>\n"
    (part,) = html_parts(raw)
    assert part.transfer_encoding == "7bit"


def test_it_skips_html_with_a_transfer_encoding_it_does_not_know() -> None:
    raw = b"From: a@example.com\nContent-Type: text/html\nContent-Transfer-Encoding: x-uue\n\nx\n"
    assert instrument_message(raw, rewrite) == raw


def test_it_skips_html_with_a_file_name_even_when_inline() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: text/html\n"
        b'Content-Disposition: inline; filename="page.html"\n\n<body>x</body>\n'
    )
    assert instrument_message(raw, rewrite) == raw


def test_it_does_not_look_inside_attached_messages() -> None:
    raw = (
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/html\n\n<body>mine</body>\n"
        b"--b\nContent-Type: message/rfc822\n\n"
        b"From: c@example.com\nContent-Type: text/html\n\n<body>forwarded</body>\n"
        b"--b--\n"
    )
    instrumented = instrument_message(raw, rewrite)
    assert instrumented.count(PIXEL_URL.encode()) == 1
    assert b"<body>forwarded</body>" in instrumented


def test_it_reads_a_multipart_without_close_delimiter_to_the_end() -> None:
    raw = (
        b'From: a@example.com\nContent-Type: multipart/alternative; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nx\n--b\nContent-Type: text/html\n\n<body>y</body>\n"
    )
    (part,) = html_parts(raw)
    assert raw[part.start : part.end] == b"<body>y</body>\n"


def test_it_allows_multiparts_30_deep() -> None:
    assert len(html_parts(nested(30))) == 1


# Refusals


def nested(depth: int) -> bytes:
    raw = b"Content-Type: text/html\n\n<body>x</body>"
    for level in range(depth):
        boundary = b"b%d" % level
        raw = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"\n\n--'
            + boundary
            + b"\n"
            + raw
            + b"\n--"
            + boundary
            + b"--"
        )
    return b"From: a@example.com\n" + raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "does not start with a header field"),
        (b"\nFrom: a@example.com\n", "does not start with a header field"),
        (b"From a@example.com Mon Mar  2 10:00:00 2026\nTo: b@example.com\n\nx", "header field"),
        (b"Content-Type: multipart/mixed\n\n--x\n\nx\n--x--\n", "has no boundary parameter"),
        (b'Content-Type: multipart/mixed; boundary=""\n\nx\n', "has no boundary parameter"),
        (b"Content-Type: multipart/mixed; boundary=b\n\n--c\n\nx\n", "'b' never appears"),
        (b"Content-Type: multipart/mixed; boundary=b\n\n--b--\n", "has no parts"),
        (
            b"Content-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGJv!ZHk+\n",
            "base64 body cannot be decoded",
        ),
        (b"Content-Type: text/html; charset=klingon\n\n<b>x</b>\n", "'klingon' is unknown"),
        (b"Content-Type: text/html; charset=base64\n\n<b>x</b>\n", "'base64' is unknown"),
        (nested(31), "more than 30 deep"),
        (
            b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\n\nx\n" * 1001 + b"--b--\n",
            "more than 1000 parts",
        ),
    ],
    ids=[
        "empty",
        "blank first line",
        "mbox From line",
        "no boundary",
        "empty boundary",
        "boundary never appears",
        "no parts",
        "bad base64",
        "unknown charset",
        "not a text charset",
        "too deep",
        "too many parts",
    ],
)
def test_it_refuses_a_message_it_cannot_read_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InstrumentError, match=re.escape(reason)) as refused:
        instrument_message(raw, rewrite)
    assert "\n" not in str(refused.value)


# Recipients, Bcc and headers


def test_it_lists_recipients_from_to_cc_and_bcc_once_each_in_order() -> None:
    assert recipients(corpus("bcc-header.eml")) == [
        "olivia@example.com",
        "peggy@example.com",
        "rupert@example.net",
        "sybil@example.net",
        "trent@example.org",
    ]


def test_it_reads_recipients_from_every_to_field_but_not_from_the_body() -> None:
    raw = b"To: a@example.com\nTo: b@example.com\nFrom: c@example.com\n\nTo: d@example.com\n"
    assert recipients(raw) == ["a@example.com", "b@example.com"]


def test_it_lists_no_recipients_for_undisclosed_recipients() -> None:
    assert recipients(b"To: undisclosed-recipients:;\n\nx") == []


def test_it_removes_a_folded_bcc_field_and_nothing_else() -> None:
    raw = corpus("bcc-header.eml")
    bcc = b"Bcc: Sybil <sybil@example.net>,\n trent@example.org\n"
    assert bcc in raw
    assert without_bcc(raw) == raw.replace(bcc, b"")


def test_it_removes_every_bcc_field_in_any_case_and_keeps_crlf() -> None:
    raw = b"BCC: a@example.com\r\nTo: b@example.com\r\nbcc : c@example.com\r\n\r\nBcc: body\r\n"
    assert without_bcc(raw) == b"To: b@example.com\r\n\r\nBcc: body\r\n"


def test_it_leaves_a_message_without_bcc_identical() -> None:
    raw = corpus("long-folded-headers.eml")
    assert without_bcc(raw) is raw


def test_it_decodes_an_encoded_subject_folded_over_two_lines() -> None:
    subject = header(corpus("long-folded-headers.eml"), "Subject")
    assert subject == "Rapport hebdomadaire — semaine 11 (détails et chiffres)"


def test_it_decodes_an_encoded_display_name() -> None:
    assert header(corpus("latin1-qp.eml"), "from") == "Boutique Müller <info@boutique.example.de>"


def test_it_unfolds_a_long_header() -> None:
    dkim = header(corpus("long-folded-headers.eml"), "DKIM-Signature")
    assert dkim is not None
    assert dkim.startswith("v=1; a=rsa-sha256; c=relaxed/relaxed; d=reports.example.com;\ts=")
    assert "\n" not in dkim


def test_it_returns_none_for_a_missing_header() -> None:
    assert header(corpus("text-only.eml"), "Reply-To") is None


def test_it_returns_an_undecodable_header_as_written() -> None:
    assert header(b"Subject: =?x-klingon?q?Qapla=27?=\n\n", "subject") == "=?x-klingon?q?Qapla=27?="


# Any input


def damaged(original: bytes, data: st.DataObject) -> bytes:
    """A corpus message with a few random cuts, insertions and duplications."""
    raw = original
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        end = data.draw(st.integers(at, min(len(raw), at + 40)))
        edit = data.draw(st.sampled_from(["cut", "insert", "duplicate"]))
        if edit == "cut":
            raw = raw[:at] + raw[end:]
        elif edit == "insert":
            raw = raw[:at] + data.draw(st.binary(max_size=20)) + raw[at:]
        else:
            raw = raw[:end] + raw[at:end] + raw[end:]
    return raw


def instruments_or_refuses(raw: bytes) -> None:
    """Either outcome is fine; any other exception fails the test."""
    try:
        instrument_message(raw, rewrite)
    except InstrumentError as refused:
        reason = str(refused)
    else:
        return
    assert reason
    assert "\n" not in reason


@given(st.binary())
def test_it_instruments_or_refuses_random_bytes(raw: bytes) -> None:
    instruments_or_refuses(raw)


@given(st.sampled_from(FILES), st.data())
def test_it_instruments_or_refuses_damaged_messages(name: str, data: st.DataObject) -> None:
    instruments_or_refuses(damaged(corpus(name), data))


@given(st.sampled_from(FILES), st.data())
def test_the_header_helpers_never_raise_on_damaged_messages(name: str, data: st.DataObject) -> None:
    raw = damaged(corpus(name), data)
    assert isinstance(recipients(raw), list)
    assert isinstance(without_bcc(raw), bytes)
    for field in ("Subject", "From", "To"):
        value = header(raw, field)
        assert value is None or isinstance(value, str)


@given(st.binary())
def test_the_header_helpers_never_raise_on_random_bytes(raw: bytes) -> None:
    recipients(raw)
    without_bcc(raw)
    header(raw, "subject")
