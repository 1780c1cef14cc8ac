"""Every recognised fetcher, with the User-Agents and addresses it really uses (RESEARCH.md §1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailbeacon.classify import signatures
from mailbeacon.classify.apple import AppleEgress
from mailbeacon.classify.pipeline import Classifier, Outcome
from mailbeacon.classify.rules import EARLY, SECOND, Context, Hit, MessageFacts

SENT = 1_796_000_000 * SECOND
LATER = SENT + 3600 * SECOND
MESSAGE = MessageFacts(user_id=7, sent_at=SENT, sender_ip="192.0.2.25")

GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
OUTLOOK_OLD = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
OUTLOOK_IOS = "Outlook-iOS/709.2226530.prod.iphone (3.24.1)"
MAC_OUTLOOK = "MacOutlook/16.46.21021202 (Intelx64 Mac OS X 11.2.2 (Build 20D80))"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
IOS_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
STALE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
HEADLESS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36"
)

HOME = "198.51.100.20"  # a reader's own address
APPLE_RELAY = "104.28.28.1"  # inside the first range of ../shared/data's IPv4 list
GOOGLE = "66.249.84.10"
MICROSOFT_WEB = "40.97.12.3"  # Exchange Online
MICROSOFT_EOP = "40.107.22.9"  # Exchange Online Protection


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory, apple_egress: Path) -> Classifier:
    return Classifier(AppleEgress(tmp_path_factory.mktemp("data"), override=apple_egress))


def classify(
    classifier: Classifier,
    user_agent: str,
    ip: str = HOME,
    *,
    kind: str = "open",
    method: str = "GET",
    at: int = LATER,
    purpose: str = "",
    referer: str = "",
    self_user: int | None = None,
) -> Outcome:
    hit = Hit(kind, method, user_agent, purpose, referer, "")  # type: ignore[arg-type]
    return classifier.classify(hit, ip, Context.of(MESSAGE, at, ip, self_user))


def test_apple_mpp_is_the_bare_user_agent_from_apples_relays(classifier: Classifier) -> None:
    outcome = classify(classifier, "Mozilla/5.0", APPLE_RELAY)
    assert (outcome.verdict, outcome.agent) == ("machine", "apple_mpp")
    assert outcome.reasons[0].rule == "apple_mpp"


def test_the_bare_user_agent_elsewhere_is_not_apple(classifier: Classifier) -> None:
    outcome = classify(classifier, "Mozilla/5.0", HOME)
    assert (outcome.verdict, outcome.agent) == ("machine", "automation")


def test_apple_mail_without_protection_is_a_person_never_mpp(classifier: Classifier) -> None:
    for agent in (APPLE_MAIL, IOS_MAIL):
        outcome = classify(classifier, agent, HOME)
        assert (outcome.verdict, outcome.agent, outcome.client) == (
            "human",
            "apple_mail",
            "Apple Mail",
        )
    assert classify(classifier, IOS_MAIL).client_type == "mobile"


def test_a_safari_click_through_private_relay_is_a_person(classifier: Classifier) -> None:
    outcome = classify(classifier, IPHONE_SAFARI, APPLE_RELAY, kind="click")
    assert (outcome.verdict, outcome.client_type) == ("human", "mobile")


def test_gmails_proxy_is_an_open_without_device_data(classifier: Classifier) -> None:
    outcome = classify(classifier, GMAIL, GOOGLE)
    assert (outcome.verdict, outcome.agent, outcome.client_type) == (
        "human",
        "gmail_proxy",
        "proxy",
    )
    assert outcome.os == ""  # its User-Agent claims Windows XP


def test_gmails_proxy_seconds_after_sending_is_a_prefetch(classifier: Classifier) -> None:
    outcome = classify(classifier, GMAIL, GOOGLE, at=SENT + 3 * SECOND)
    assert (outcome.verdict, outcome.agent) == ("machine", "prefetch")


def test_gmails_proxy_never_follows_links(classifier: Classifier) -> None:
    assert classify(classifier, GMAIL, GOOGLE, kind="click").verdict == "machine"


def test_yahoos_proxy_opens_but_does_not_click(classifier: Classifier) -> None:
    assert classify(classifier, YAHOO).agent == "yahoo_proxy"
    assert classify(classifier, YAHOO).verdict == "human"
    assert classify(classifier, YAHOO, kind="click").verdict == "machine"


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (OUTLOOK, ("outlook", "Outlook", "desktop", "Windows 10")),
        (OUTLOOK_OLD, ("outlook", "Outlook", "desktop", "")),
        (OUTLOOK_IOS, ("outlook_ios", "Outlook for iOS", "mobile", "iOS")),
        (MAC_OUTLOOK, ("outlook_mac", "Outlook for Mac", "desktop", "Mac OS X 11")),
        (THUNDERBIRD, ("thunderbird", "Thunderbird", "desktop", "Windows 10")),
    ],
)
def test_mail_clients_are_people_by_name_type_and_system(
    classifier: Classifier, user_agent: str, expected: tuple[str, str, str, str]
) -> None:
    outcome = classify(classifier, user_agent)
    assert outcome.verdict == "human"
    assert (outcome.agent, outcome.client, outcome.client_type, outcome.os) == expected


def test_outlook_on_the_web_loads_images_from_microsofts_network(classifier: Classifier) -> None:
    outcome = classify(classifier, CHROME, MICROSOFT_WEB)
    assert (outcome.verdict, outcome.agent) == ("human", "outlook_web")


def test_clicks_from_microsofts_network_are_safe_links(classifier: Classifier) -> None:
    outcome = classify(classifier, CHROME, MICROSOFT_EOP, kind="click")
    assert (outcome.verdict, outcome.agent) == ("machine", "security_scanner")


def test_a_current_browser_is_webmail_on_the_pixel_and_a_person_on_a_link(
    classifier: Classifier,
) -> None:
    assert classify(classifier, CHROME).agent == "webmail"
    assert classify(classifier, CHROME, kind="click").verdict == "human"


@pytest.mark.parametrize(
    ("user_agent", "method", "rule"),
    [
        ("", "GET", "empty_user_agent"),
        (CHROME, "HEAD", "head_request"),
        ("curl/8.5.0", "GET", "http_library"),
        ("python-requests/2.32.3", "GET", "http_library"),
        ("Go-http-client/1.1", "GET", "http_library"),
        (HEADLESS, "GET", "headless_browser"),
        (STALE, "GET", "stale_browser"),
        ("Barracuda Sentinel (EE)", "GET", "named_scanner"),
        ("Microsoft Office Existence Discovery", "HEAD", "named_scanner"),
    ],
)
def test_scanners_and_scripts_are_machines(
    classifier: Classifier, user_agent: str, method: str, rule: str
) -> None:
    for kind in ("open", "click"):
        outcome = classify(classifier, user_agent, method=method, kind=kind)
        assert outcome.verdict == "machine"
        assert rule in [r.rule for r in outcome.reasons]


def test_a_prefetch_header_is_not_a_look(classifier: Classifier) -> None:
    outcome = classify(classifier, CHROME, purpose="prefetch")
    assert (outcome.verdict, outcome.agent) == ("machine", "prefetch")


def test_an_early_fetch_alone_does_not_decide_but_tips_a_data_point(
    classifier: Classifier,
) -> None:
    # A current browser within 10 s of sending: still provisionally a person (settling decides).
    assert classify(classifier, CHROME, at=SENT + EARLY // 2).verdict == "human"
    # With a gateway's rewrite host as well, two hints against a weak "browser".
    outcome = classify(
        classifier,
        "Mozilla/5.0 (compatible)",
        at=SENT + 2 * SECOND,
        referer="https://eur01.safelinks.protection.outlook.com/?url=x",
    )
    assert [r.rule for r in outcome.reasons] == ["early_fetch", "rewrite_host"]


def test_the_senders_address_and_browser_are_self(classifier: Classifier) -> None:
    assert classify(classifier, THUNDERBIRD, "192.0.2.25").verdict == "self"
    assert classify(classifier, CHROME, HOME, self_user=7).verdict == "self"
    assert classify(classifier, CHROME, HOME, self_user=8).verdict == "human"  # another user


def test_an_unknown_fetcher_is_unknown_and_says_so(classifier: Classifier) -> None:
    outcome = classify(classifier, "SomethingNew/1.0")
    assert outcome.verdict == "unknown"
    assert outcome.reasons[0].rule == "no_rule"


def test_every_reason_has_a_readable_sentence(classifier: Classifier) -> None:
    for agent in (GMAIL, OUTLOOK, "", "curl/8", STALE, "Mozilla/5.0", CHROME):
        for reason in classify(classifier, agent).reasons:
            assert reason.why.endswith(".")
            assert len(reason.why) < 120


def test_your_own_signatures_add_to_the_built_in_ones(tmp_path: Path, apple_egress: Path) -> None:
    extra = tmp_path / "mine.toml"
    extra.write_text(
        '[networks]\ndatacentre = ["198.51.100.0/24"]\n[scanners]\nuser_agents = ["AcmeGuard"]\n'
    )
    mine = Classifier(AppleEgress(tmp_path, override=apple_egress), signatures.load(extra))
    outcome = classify(mine, "Mozilla/5.0 (compatible)", HOME)
    assert (outcome.verdict, outcome.reasons[0].rule) == ("machine", "datacentre")
    assert classify(mine, "AcmeGuard/2.1", "192.0.2.99").verdict == "machine"
    assert "Barracuda Sentinel" in mine.signatures.scanners  # the built-in ones stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nope]\nx = 1\n", "unknown table [nope]"),
        ("[networks\n", "mine.toml"),
        ('[networks]\ndatacentre = ["not a network"]\n', "not shaped like signatures.toml"),
    ],
)
def test_a_broken_signatures_file_is_refused_with_a_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    extra = tmp_path / "mine.toml"
    extra.write_text(text)
    with pytest.raises(signatures.SignaturesError, match=re.escape(message)):
        signatures.load(extra)
