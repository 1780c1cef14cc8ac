"""Put the open pixel and tracked links into an HTML email body.

The document is never re-serialised. A small tokenizer that follows the HTML standard's rules
for tags, attributes, comments and raw-text elements finds where each link's ``href`` value
sits, and only those spans change (plus the pixel's insertion point). Parsing into a tree and
writing it back out (lxml, selectolax) would rewrite the DOCTYPE, add ``<tbody>`` and change
quoting: no longer the email the sender tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape, unescape
from html.entities import html5

_WS = r"[\t\n\f\r ]"
_NAME = r"[^\t\n\f\r />][^\t\n\f\r />=]*+"
# An unterminated quoted value runs to the end of the input, as in a browser.
_VALUE = r"""(?:"[^"]*+"?+|'[^']*+'?+|[^\t\n\f\r >]*+)"""
_ATTRIBUTES = rf"(?:[\t\n\f\r /]++|{_NAME}(?:{_WS}*+={_WS}*+{_VALUE})?+)*+"

# What can start markup; any other "<" is text.
_MARKUP = re.compile(r"<(?:!--|[!?/]|[A-Za-z])")
_START_TAG = re.compile(rf"<([A-Za-z][^\t\n\f\r />]*+)({_ATTRIBUTES})(>?)")
_END_TAG = re.compile(rf"</([A-Za-z][^\t\n\f\r />]*+){_ATTRIBUTES}(>?)")
# Text and tags the scan has nothing to do with, passed over in one match (in C): any text,
# start tags other than links and raw-text elements, end tags other than body and html. A 100 KB
# newsletter is a few thousand such tags around a few hundred links; stepping through each in
# Python was most of the cost of instrumenting it. (Only ASCII letters lowercase to these names,
# so the case-insensitive match names exactly the tags the steps below look at.)
_SKIP = re.compile(
    r"(?:[^<]++|<(?![!?/A-Za-z])"
    r"|<(?!(?i:a|area|script|style|textarea|title|xmp|iframe|noembed|noframes)[\t\n\f\r />])"
    rf"[A-Za-z][^\t\n\f\r />]*+{_ATTRIBUTES}>"
    rf"|</(?!(?i:body|html)[\t\n\f\r />])[A-Za-z][^\t\n\f\r />]*+{_ATTRIBUTES}>)*+"
)
_ATTRIBUTE = re.compile(rf"({_NAME})(?:{_WS}*+={_WS}*+({_VALUE}))?+")
_COMMENT = re.compile(r"<!--(?:-?>|.*?--!?>)", re.DOTALL)

# Outlook for Windows renders with Word, which reads markup inside "downlevel-hidden"
# conditional comments (<!--[if mso]> ... <![endif]-->): bulletproof buttons put their real
# link in a VML <v:roundrect href="...">. "Downlevel-revealed" ones (<!--[if !mso]><!-->)
# are ordinary comments around ordinary markup.
_CONDITIONAL = re.compile(r"<!--\[if[^\]>]*+\]>", re.IGNORECASE)
_REVEALED = re.compile(rf"<!--(?:-?>|{_WS}*+-->)")
_ENDIF = re.compile(rf"<!\[endif\]{_WS}*+-->", re.IGNORECASE)

# Elements whose content is text, not markup: an <a href> inside them is not a link.
_RAW_TEXT_END = {
    name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE)
    for name in ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes")
}

_CHARACTER_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")
_TRACKABLE = re.compile(r"https?://", re.IGNORECASE)
_URL_PADDING = "".join(chr(code) for code in range(0x21))  # what a browser strips around a URL

_PIXEL = (
    '<img src="{src}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;'
    'border:0;margin:0;padding:0;overflow:hidden" />'
)


def rewrite_html(html: str, pixel_url: str | None, track_link: Callable[[str], str | None]) -> str:
    """The document with tracked ``http(s)`` links and the pixel before the last ``</body>``.

    ``track_link`` receives each absolute web link as the browser would read it (character
    references decoded) and returns the URL to put in its place, or None to leave the link
    alone. A link carrying ``data-mailbeacon="off"`` is never offered.
    """
    scan = _Scan(html, track_link)
    scan.run()
    edits = scan.edits
    if pixel_url is not None:
        at = scan.last_body_close
        if at is None:
            at = scan.last_html_close
        if at is None:
            at = len(html)
        edits.append((at, at, _PIXEL.format(src=escape(pixel_url, quote=True))))
        edits.sort(key=lambda edit: edit[0])
    return _splice(html, edits)


class _Scan:
    """One pass over a document, collecting edits and where ``</body>`` and ``</html>`` are."""

    def __init__(
        self, doc: str, track_link: Callable[[str], str | None], *, skip: bool = True
    ) -> None:
        self.doc = doc
        self.track_link = track_link
        self.skip = skip  # off only to check, in the tests, that skipping changes nothing
        self.edits: list[tuple[int, int, str]] = []
        self.last_body_close: int | None = None
        self.last_html_close: int | None = None
        self.no_endif_after = len(doc) + 1

    def run(self) -> None:
        doc = self.doc
        pos = 0
        limit = len(doc)  # the document, or the inside of a conditional comment
        resume = 0  # where scanning goes on after that conditional comment
        in_conditional = False
        while True:
            # Not inside a conditional comment, where VML tags and every end tag are looked at.
            skipped = _SKIP.match(doc, pos, limit) if self.skip and not in_conditional else None
            if skipped is not None:
                pos = skipped.end()
            found = _MARKUP.search(doc, pos, limit)
            if found is None:
                if not in_conditional:
                    return
                pos, limit, in_conditional = resume, len(doc), False
                continue
            at, lead = found.start(), found.group()
            if lead == "<!--":
                opener = None if in_conditional else _CONDITIONAL.match(doc, at, limit)
                if opener is not None and not _REVEALED.match(doc, opener.end(), limit):
                    close = self._endif(opener.end())
                    if close is not None:
                        pos, resume, limit = opener.end(), close.end(), close.start()
                        in_conditional = True
                        continue
                comment = _COMMENT.match(doc, at, limit)
                pos = limit if comment is None else comment.end()
            elif lead == "</":
                pos = self._end_tag(at, limit, in_conditional)
            elif lead in ("<!", "<?"):  # doctype, CDATA, processing instruction: bogus comments
                close_at = doc.find(">", at + 2, limit)
                pos = limit if close_at < 0 else close_at + 1
            else:
                pos = self._start_tag(at, limit, in_conditional)

    def _endif(self, start: int) -> re.Match[str] | None:
        # Once no <![endif]--> follows some point, none follows any later point: remembering
        # that keeps a document full of unclosed conditional comments linear.
        if start >= self.no_endif_after:
            return None
        close = _ENDIF.search(self.doc, start)
        if close is None:
            self.no_endif_after = start
        return close

    def _start_tag(self, at: int, limit: int, in_conditional: bool) -> int:
        tag = _START_TAG.match(self.doc, at, limit)
        if tag is None:  # cannot happen: _MARKUP found "<" and a letter
            return at + 1
        if not tag.group(3):  # the tag never closes: a browser drops it and everything after
            return limit
        name = tag.group(1).lower()
        if name in ("a", "area") or (in_conditional and name.startswith("v:")):
            self._track(tag.start(2), tag.end(2))
        raw_text_end = _RAW_TEXT_END.get(name)
        if raw_text_end is None:
            return tag.end()
        close = raw_text_end.search(self.doc, tag.end(), limit)
        return limit if close is None else close.start()

    def _end_tag(self, at: int, limit: int, in_conditional: bool) -> int:
        tag = _END_TAG.match(self.doc, at, limit)
        if tag is None:  # "</" and no letter: "</>" is dropped, anything else is a comment
            close_at = self.doc.find(">", at + 2, limit)
            return limit if close_at < 0 else close_at + 1
        if not tag.group(2):
            return limit
        if not in_conditional:
            name = tag.group(1).lower()
            if name == "body":
                self.last_body_close = at
            elif name == "html":
                self.last_html_close = at
        return tag.end()

    def _track(self, start: int, end: int) -> None:
        """Offer the tag's href, if it has one and the tag does not opt out."""
        href = None
        for attribute in _ATTRIBUTE.finditer(self.doc, start, end):
            name, value = attribute.group(1).lower(), attribute.group(2)
            if name == "href" and href is None:  # a browser keeps the first of duplicates
                href = attribute
            elif name == "data-mailbeacon" and _text(value).strip().lower() == "off":
                return
        if href is None or href.group(2) is None:
            return
        value, value_start, value_end = href.group(2), href.start(2), href.end(2)
        quoted = value[:1] in ('"', "'")
        url = _text(value).strip(_URL_PADDING)
        if not _TRACKABLE.match(url):
            return
        tracked = self.track_link(url)
        if tracked is None:
            return
        if quoted:
            self.edits.append((value_start + 1, value_end - 1, escape(tracked, quote=True)))
        else:
            self.edits.append((value_start, value_end, f'"{escape(tracked, quote=True)}"'))


def _text(value: str | None) -> str:
    """An attribute value as a browser reads it: quotes removed, character references decoded."""
    if value is None:
        return ""
    if value[:1] in ('"', "'"):
        value = value[1:-1] if len(value) > 1 and value[-1] == value[0] else value[1:]
    if "&" not in value:
        return value
    if "&" not in value.replace("&amp;", ""):  # the usual query string, decoded in C
        return value.replace("&amp;", "&")
    return _CHARACTER_REFERENCE.sub(_decode_reference, value)


def _decode_reference(reference: re.Match[str]) -> str:
    """One character reference, read the way the HTML standard reads it inside an attribute.

    ``html.unescape`` reads text content, where ``&region=1`` becomes ``®ion=1``. Inside an
    attribute, a legacy entity name without ``;`` that is followed by ``=`` or a letter or digit
    stays as written, so query strings like ``?a=1&region=eu`` survive: browsers follow that
    link with ``&region`` intact, and so must we.
    """
    body = reference.group(1)
    if body[0] == "#":
        return unescape(reference.group())
    for length in range(len(body), 1, -1):
        name = body[:length]
        if name in html5:
            break
    else:
        return reference.group()
    rest = body[length:] or reference.string[reference.end() : reference.end() + 1]
    if (
        not name.endswith(";")
        and rest[:1]
        and (rest[0] == "=" or (rest[0].isascii() and rest[0].isalnum()))
    ):
        return reference.group()
    return html5[name] + body[length:]


def _splice(doc: str, edits: list[tuple[int, int, str]]) -> str:
    if not edits:
        return doc
    pieces: list[str] = []
    last = 0
    for start, end, replacement in edits:
        pieces += (doc[last:start], replacement)
        last = end
    pieces.append(doc[last:])
    return "".join(pieces)
