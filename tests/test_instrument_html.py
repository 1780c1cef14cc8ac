from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbeacon.instrument.html import (
    _CHARACTER_REFERENCE,
    _decode_reference,
    _Scan,
    _text,
    rewrite_html,
)

PIXEL_URL = "https://t.test/o/abc.gif"
PIXEL = (
    '<img src="https://t.test/o/abc.gif" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;overflow:hidden" />'
)


def track(url: str) -> str:
    return "https://t.test/c/" + str(len(url))


def links_only(html: str) -> str:
    return rewrite_html(html, None, track)


# Links


def test_it_rewrites_a_double_quoted_link() -> None:
    html = '<a href="https://shop.test/spring">Spring</a>'
    assert links_only(html) == '<a href="https://t.test/c/24">Spring</a>'


def test_it_keeps_single_quotes() -> None:
    html = "<a class='x' href='https://shop.test/spring'>Spring</a>"
    assert links_only(html) == "<a class='x' href='https://t.test/c/24'>Spring</a>"


def test_it_writes_an_unquoted_href_in_double_quotes() -> None:
    html = "<a href=https://shop.test/spring target=_blank>Spring</a>"
    assert links_only(html) == '<a href="https://t.test/c/24" target=_blank>Spring</a>'


def test_it_gives_track_link_the_url_with_character_references_decoded() -> None:
    seen: list[str] = []

    def remember(url: str) -> str:
        seen.append(url)
        return "https://t.test/c/1?a=1&b=2"

    html = '<a href="https://x.test/?a=1&amp;b=2&#38;c=3">x</a>'
    result = rewrite_html(html, None, remember)

    assert seen == ["https://x.test/?a=1&b=2&c=3"]
    assert result == '<a href="https://t.test/c/1?a=1&amp;b=2">x</a>'


def test_it_escapes_quotes_in_the_tracked_url() -> None:
    html = "<a href='https://x.test/'>x</a>"
    result = rewrite_html(html, None, lambda url: "https://t.test/?q='\"<>")
    assert result == "<a href='https://t.test/?q=&#x27;&quot;&lt;&gt;'>x</a>"


def test_it_reads_legacy_entity_names_in_query_strings_as_a_browser_does() -> None:
    seen: list[str] = []
    html = '<a href="https://x.test/?a=1&region=eu&not=2&copy;">x</a>'
    rewrite_html(html, None, seen.append)
    assert seen == ["https://x.test/?a=1&region=eu&not=2\N{COPYRIGHT SIGN}"]


def test_it_reads_tags_attributes_and_schemes_in_any_case() -> None:
    html = '<A HREF="HTTPS://shop.test/">x</A><a Href="Http://shop.test/">y</a>'
    expected = '<A HREF="https://t.test/c/18">x</A><a Href="https://t.test/c/17">y</a>'
    assert links_only(html) == expected


def test_it_rewrites_area_links() -> None:
    html = '<map><area shape="rect" coords="0,0,9,9" href="https://shop.test/"></map>'
    assert links_only(html) == (
        '<map><area shape="rect" coords="0,0,9,9" href="https://t.test/c/18"></map>'
    )


def test_it_strips_white_space_around_the_url() -> None:
    seen: list[str] = []
    rewrite_html('<a href="\n  https://shop.test/ \t">x</a>', None, seen.append)
    assert seen == ["https://shop.test/"]


@pytest.mark.parametrize(
    "href",
    [
        "mailto:help@shop.test",
        "tel:+33123456789",
        "#details",
        "/account/orders",
        "orders.html",
        "//shop.test/protocol-relative",
        "javascript:alert(1)",
        "ftp://files.shop.test/",
        "data:text/html,hi",
        "https:/one-slash",
        "",
    ],
)
def test_it_leaves_links_that_are_not_absolute_web_links_alone(href: str) -> None:
    html = f'<a href="{href}">x</a>'
    assert links_only(html) == html


def test_it_leaves_a_tag_without_href_alone() -> None:
    html = '<a name="top">x</a><a href>y</a>'
    assert links_only(html) == html


def test_it_leaves_a_link_alone_when_track_link_says_none() -> None:
    html = '<a href="https://shop.test/keep">x</a><a href="https://shop.test/">y</a>'
    result = rewrite_html(html, None, lambda url: None if url.endswith("keep") else track(url))
    assert result == '<a href="https://shop.test/keep">x</a><a href="https://t.test/c/18">y</a>'


@pytest.mark.parametrize(
    "marker",
    [
        'data-mailbeacon="off"',
        "data-mailbeacon='off'",
        "data-mailbeacon=off",
        'DATA-MAILBEACON="off"',
        'Data-MailBeacon = "OFF"',
    ],
)
def test_it_leaves_links_marked_data_mailbeacon_off_alone(marker: str) -> None:
    html = f'<a href="https://shop.test/unsubscribe" {marker}>Unsubscribe</a>'
    assert links_only(html) == html


def test_it_tracks_links_whose_data_mailbeacon_is_not_off() -> None:
    html = '<a data-mailbeacon="on" href="https://shop.test/">x</a>'
    assert links_only(html) == '<a data-mailbeacon="on" href="https://t.test/c/18">x</a>'


def test_it_never_changes_the_visible_link_text() -> None:
    html = '<a href="https://shop.test/">https://shop.test/</a>'
    assert links_only(html) == '<a href="https://t.test/c/18">https://shop.test/</a>'


def test_it_reads_attributes_split_over_lines() -> None:
    html = '<a\n  class="link"\n  href="https://shop.test/"\n  style="color:red">x</a>'
    expected = '<a\n  class="link"\n  href="https://t.test/c/18"\n  style="color:red">x</a>'
    assert links_only(html) == expected


def test_it_is_not_fooled_by_a_greater_than_sign_inside_a_quoted_value() -> None:
    html = '<a title="1 > 0" href="https://shop.test/">x</a>'
    assert links_only(html) == '<a title="1 > 0" href="https://t.test/c/18">x</a>'


def test_it_uses_the_first_of_two_hrefs_as_a_browser_does() -> None:
    html = '<a href="https://one.test/" href="https://two.test/">x</a>'
    assert links_only(html) == '<a href="https://t.test/c/17" href="https://two.test/">x</a>'


def test_it_leaves_a_tag_that_never_closes_alone() -> None:
    html = '<p>hi</p><a href="https://shop.test/"'
    assert links_only(html) == html


def test_it_changes_only_the_edited_bytes() -> None:
    html = (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN">\n'
        "<HTML><head><meta http-equiv=Content-Type content='text/html'></head>\n"
        "<body bgcolor=#ffffff><table><tr><td  align = center >\n"
        '<a  href = "https://shop.test/"  >x</a><br/>\n'
        "<img src=logo.png alt=''>&nbsp;&copy; 2026</td></tr></table>\n"
        "</body></HTML>\n"
    )
    expected = html.replace("https://shop.test/", "https://t.test/c/18")
    assert links_only(html) == expected


# Outlook conditional comments and raw text


def test_it_rewrites_vml_buttons_inside_outlook_conditional_comments() -> None:
    html = (
        '<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
        'href="https://shop.test/cart" arcsize="10%"><center>Cart</center>'
        "</v:roundrect><![endif]-->"
    )
    assert links_only(html) == html.replace("https://shop.test/cart", "https://t.test/c/22")


def test_it_rewrites_links_inside_any_downlevel_hidden_conditional_comment() -> None:
    html = '<!--[if gte mso 9]><v:rect href="https://a.test/"><a href="https://b.test/">b</a>'
    html += "<!-- note --></v:rect><![endif]-->"
    expected = html.replace("https://a.test/", "https://t.test/c/15").replace(
        "https://b.test/", "https://t.test/c/15"
    )
    assert links_only(html) == expected


def test_it_rewrites_links_between_downlevel_revealed_conditional_comments() -> None:
    html = '<!--[if !mso]><!--><a href="https://shop.test/">x</a><!--<![endif]-->'
    assert links_only(html) == html.replace("https://shop.test/", "https://t.test/c/18")


def test_it_leaves_links_in_ordinary_comments_alone() -> None:
    html = '<!-- <a href="https://shop.test/">old</a> --><!----><!-->'
    assert links_only(html) == html


def test_it_leaves_vml_outside_conditional_comments_alone() -> None:
    html = '<v:roundrect href="https://shop.test/">x</v:roundrect>'
    assert links_only(html) == html


def test_it_reads_a_conditional_comment_without_endif_as_an_ordinary_comment() -> None:
    html = '<!--[if mso]><v:rect href="https://shop.test/"> -->'
    assert links_only(html) == html


@pytest.mark.parametrize("element", ["script", "style", "textarea", "title", "SCRIPT"])
def test_it_leaves_links_inside_raw_text_elements_alone(element: str) -> None:
    html = f'<{element} type="x">document.write(\'<a href="https://shop.test/">\')</{element}>'
    html += '<a href="https://shop.test/">x</a>'
    expected = html[: html.rindex("https://")] + 'https://t.test/c/18">x</a>'
    assert links_only(html) == expected


def test_it_reads_raw_text_inside_conditional_comments() -> None:
    html = '<!--[if mso]><style>a[href="https://x.test/"]{}</style><![endif]-->'
    assert links_only(html) == html


# Pixel


def test_it_puts_the_pixel_right_before_the_closing_body_tag() -> None:
    html = "<html><body><p>Hi</p></body>\n</html>"
    assert rewrite_html(html, PIXEL_URL, track) == f"<html><body><p>Hi</p>{PIXEL}</body>\n</html>"


def test_it_puts_the_pixel_before_the_last_of_two_closing_body_tags() -> None:
    html = "<body>a</body><body>b</body>c"
    assert rewrite_html(html, PIXEL_URL, track) == f"<body>a</body><body>b{PIXEL}</body>c"


def test_it_finds_an_uppercase_closing_body_tag_with_white_space() -> None:
    html = "<BODY>a</BODY >"
    assert rewrite_html(html, PIXEL_URL, track) == f"<BODY>a{PIXEL}</BODY >"


def test_it_puts_the_pixel_before_closing_html_when_body_is_not_closed() -> None:
    html = "<html><body>a</html>\n"
    assert rewrite_html(html, PIXEL_URL, track) == f"<html><body>a{PIXEL}</html>\n"


def test_it_appends_the_pixel_when_neither_body_nor_html_is_closed() -> None:
    assert rewrite_html("<p>a", PIXEL_URL, track) == f"<p>a{PIXEL}"


def test_it_appends_the_pixel_to_an_empty_document() -> None:
    assert rewrite_html("", PIXEL_URL, track) == PIXEL


def test_it_ignores_closing_body_tags_in_comments_scripts_and_conditional_comments() -> None:
    html = (
        "<body>a</body><!-- </body> --><script>'</body>'</script><!--[if mso]></body><![endif]-->"
    )
    assert rewrite_html(html, PIXEL_URL, track) == html.replace("a</body>", f"a{PIXEL}</body>", 1)


def test_it_does_not_take_a_longer_tag_name_for_body() -> None:
    html = "<body>a</body></bodyguard>"
    assert rewrite_html(html, PIXEL_URL, track) == f"<body>a{PIXEL}</body></bodyguard>"


def test_it_escapes_the_pixel_url() -> None:
    result = rewrite_html("", 'https://t.test/o?a=1&b="2"', track)
    assert result.startswith('<img src="https://t.test/o?a=1&amp;b=&quot;2&quot;" ')


def test_it_adds_no_pixel_without_a_pixel_url() -> None:
    html = "<body>a</body>"
    assert rewrite_html(html, None, track) == html


def test_it_tracks_links_and_adds_the_pixel_in_one_pass() -> None:
    html = '<body><a href="https://shop.test/">x</a></body>'
    expected = f'<body><a href="https://t.test/c/18">x</a>{PIXEL}</body>'
    assert rewrite_html(html, PIXEL_URL, track) == expected


# Any input

html_like = st.lists(
    st.sampled_from(
        [
            "<a ",
            "<A HREF=",
            "<area href='",
            "href=",
            '"',
            "'",
            "=",
            ">",
            "<",
            "/",
            " ",
            "\n",
            "https://x.test/?a=1&amp;b",
            "&",
            "&region",
            ";",
            "mailto:x",
            "<!--",
            "-->",
            "<!--[if mso]>",
            "<![endif]-->",
            "<!--[if !mso]><!-->",
            "<v:rect ",
            "</body>",
            "</BODY >",
            "</html>",
            "<script>",
            "</script",
            "<style>",
            "<title>",
            "<!",
            "<?",
            "</",
            "data-mailbeacon=off ",
            "<!-->",
            "\x00",
            "\ud800",
        ]
    )
    | st.text(max_size=5)
).map("".join)


@given(st.text() | html_like)
def test_it_never_raises_and_adds_exactly_one_pixel(html: str) -> None:
    result = rewrite_html(html, PIXEL_URL, lambda url: None)
    assert result.replace(PIXEL, "", 1) == html


@given(st.text() | html_like)
def test_it_leaves_any_text_alone_when_nothing_is_tracked(html: str) -> None:
    assert rewrite_html(html, None, lambda url: None) == html


@given(html_like)
def test_it_only_ever_offers_absolute_web_links(html: str) -> None:
    offered: list[str] = []

    def remember(url: str) -> str:
        offered.append(url)
        return "https://t.test/c/1"

    rewrite_html(html, PIXEL_URL, remember)
    assert all(url.lower().startswith(("http://", "https://")) for url in offered)


plain_tags = st.lists(
    st.sampled_from(
        [
            "<p>",
            "<P class='x>y'>",
            "</p >",
            "<abbr>",
            "<areas href=",
            "<a\thref=",
            "<A/href=",
            "</bodyx>",
            "</Body\n>",
            "</htm>",
            "<scripts>",
            "<ſcript>",
            "<xmp>",
            "</xmp>",
            "<TEXTAREA>",
            "</textarea",
            "<b",
            "<b/>",
            "</b/ x=y>",
            "< a>",
            "<1>",
            "<é>",
            "https://x.test/",
            '"',
            "'",
            ">",
            " ",
        ]
    )
    | st.text(max_size=3)
).map("".join)


@given(html_like | plain_tags | st.lists(html_like | plain_tags).map("".join))
def test_passing_over_plain_tags_at_once_finds_what_stepping_through_them_finds(
    html: str,
) -> None:
    scans = [_Scan(html, lambda url: f"t:{url}", skip=skip) for skip in (True, False)]
    for scan in scans:
        scan.run()
    fast, slow = scans
    assert fast.edits == slow.edits
    assert (fast.last_body_close, fast.last_html_close) == (
        slow.last_body_close,
        slow.last_html_close,
    )


@given(st.lists(st.sampled_from(["&amp;", "&", "amp;", "&amp", "&AMP;", "a", "=", "&lt;", ";"])))
def test_an_href_whose_only_references_are_amp_reads_as_one_with_each_decoded(
    pieces: list[str],
) -> None:
    value = "".join(pieces)
    assert _text(value) == _CHARACTER_REFERENCE.sub(_decode_reference, value)
