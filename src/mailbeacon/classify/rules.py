"""The rules that look at one hit, each with an id, the fact it rests on, and why it exists.

A rule adds evidence (a verdict, an agent, a weight, and a sentence a user can read) or stays
silent; the pipeline weighs the evidence. A new rule is a function here with the ``@rule``
decorator; the tables it consults live in ``signatures.toml``.

Facts come from RESEARCH.md (the row is named in each docstring) and the sources it cites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from mailbeacon.classify.clients import Software
from mailbeacon.classify.signatures import Signatures

Verdict = Literal["human", "machine", "self", "unknown"]
Kind = Literal["open", "click"]

SECOND = 1_000_000  # hit times are in microseconds

# A gateway fetches the pixel a median 9 s after delivery, 61% within 10 s; people almost never
# open that fast (RESEARCH.md §1, security gateways: craft-campaign #546). Gmail's prefetch
# while the user is active in the inbox comes as soon (RESEARCH.md §1, Gmail image proxy).
EARLY = 10 * SECOND


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the pipeline knows of the message a hit belongs to."""

    user_id: int
    sent_at: int  # µs; when the upstream server accepted it, or when it was registered
    sender_ip: str | None  # the address the sender submitted the message from
    tracking: str = "full"  # privacy.MODES: what is kept of its hits


class Hit(NamedTuple):
    """One request, as the rules see it (a named tuple: built and hashed on every hit). Its
    address is seen through the networks it is in (``Where``), never directly: requests from
    the many addresses of one proxy or client share a verdict, and its cache entry."""

    kind: Kind
    method: str
    user_agent: str
    purpose: str  # Sec-Purpose, Purpose or X-Purpose
    referer: str
    via: str


class Context(NamedTuple):
    """What a hit's message says about it. Verdicts depend on the message only through these,
    so that they can be cached by request."""

    early: bool  # within EARLY of sending
    from_sender: bool  # from the address the message was submitted from
    sender_browser: bool  # carries the mark of the sending user's own browser

    @classmethod
    def of(cls, message: MessageFacts | None, at: int, ip: str, self_user: int | None) -> Context:
        if message is None:
            return NO_CONTEXT
        return cls(
            0 <= at - message.sent_at < EARLY,
            bool(message.sender_ip) and ip == message.sender_ip,
            self_user is not None and self_user == message.user_id,
        )


NO_CONTEXT = Context(early=False, from_sender=False, sender_browser=False)


class Where(NamedTuple):
    """The networks a hit's address is in."""

    apple_relay: bool  # an iCloud Private Relay egress
    google: bool
    microsoft: bool
    datacentre: bool


@dataclass(frozen=True, slots=True)
class Facts:
    """What is derived from a hit once, for every rule: its software, networks and context."""

    software: Software
    where: Where
    context: Context
    signatures: Signatures


@dataclass(frozen=True, slots=True)
class Evidence:
    rule: str
    verdict: Verdict
    agent: str | None
    weight: float  # 0–1: how sure this rule is, alone
    why: str


Finding = tuple[Verdict, str | None, float, str]
Rule = Callable[[Hit, Facts], Finding | None]
RULES: list[tuple[str, Rule]] = []


def rule(rule_id: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES.append((rule_id, fn))
        return fn

    return register


def evidence(hit: Hit, facts: Facts) -> list[Evidence]:
    found = []
    for rule_id, fn in RULES:
        finding = fn(hit, facts)
        if finding is not None:
            found.append(Evidence(rule_id, *finding))
    return found


# --- the sender ----------------------------------------------------------------------------


@rule("sender_browser")
def sender_browser(hit: Hit, facts: Facts) -> Finding | None:
    """The request carries the mark mailbeacon puts in its user's own browser: the sender is
    looking at their own mail (RESEARCH.md §3, self-opens: nylas-mail #3249, mautic #5432)."""
    if facts.context.sender_browser:
        return "self", "sender", 0.99, "The sender's own browser, marked by mailbeacon."
    return None


@rule("sender_address")
def sender_address(hit: Hit, facts: Facts) -> Finding | None:
    """The hit comes from the address the message was submitted from: the sender's copy."""
    if facts.context.from_sender:
        return "self", "sender", 0.95, "From the address the sender submitted this message from."
    return None


# --- proxies and Apple Mail Privacy Protection ---------------------------------------------


@rule("apple_mpp")
def apple_mpp(hit: Hit, facts: Facts) -> Finding | None:
    """Apple Mail Privacy Protection: User-Agent exactly ``Mozilla/5.0`` from an iCloud Private
    Relay egress address. Apple prefetches every message's images when the device downloads
    mail, read or not (RESEARCH.md §1: uap-core #509, Mailgun, ClickDimensions). The stripped
    WebKit User-Agent alone is *not* this: it is Apple Mail with the protection off."""
    if hit.user_agent == "Mozilla/5.0" and facts.where.apple_relay:
        why = "Apple Mail Privacy Protection prefetched it; it says nothing about reading."
        return "machine", "apple_mpp", 0.98, why
    return None


@rule("bare_user_agent")
def bare_user_agent(hit: Hit, facts: Facts) -> Finding | None:
    """``Mozilla/5.0`` and nothing else, not from Apple's relays: no mail client or browser
    sends that; a fetcher hiding what it is."""
    if hit.user_agent == "Mozilla/5.0" and not facts.where.apple_relay:
        why = "A User-Agent of just 'Mozilla/5.0' from outside Apple's relays: not a client."
        return "machine", "automation", 0.7, why
    return None


@rule("gmail_proxy")
def gmail_proxy(hit: Hit, facts: Facts) -> Finding | None:
    """Gmail fetches images through its proxy when the mail is opened: a real open with no
    device data (RESEARCH.md §1: SendGrid, Postmark). It never follows links, and may prefetch
    seconds after delivery while the user is active in the inbox."""
    if facts.software.family != "GmailImageProxy":
        return None
    if hit.kind == "click":
        return "machine", "gmail_proxy", 0.9, "Gmail's image proxy does not follow links."
    if facts.context.early:
        why = "Gmail's image proxy, seconds after sending: a prefetch, not a reading."
        return "machine", "prefetch", 0.8, why
    return "human", "gmail_proxy", 0.9, "Gmail's image proxy: Gmail shows images on opening."


@rule("yahoo_proxy")
def yahoo_proxy(hit: Hit, facts: Facts) -> Finding | None:
    """Yahoo and AOL Mail fetch images through their proxy on opening; on a link the proxy is
    fetching the page itself (RESEARCH.md §1, Yahoo/AOL mail proxy)."""
    if facts.software.family != "YahooMailProxy":
        return None
    if hit.kind == "click":
        return "machine", "yahoo_proxy", 0.9, "Yahoo's mail proxy fetched the link's page."
    return "human", "yahoo_proxy", 0.9, "Yahoo Mail's image proxy: it fetches on opening."


@rule("microsoft_network")
def microsoft_network(hit: Hit, facts: Facts) -> Finding | None:
    """Outlook.com and Microsoft 365 webmail load images from Microsoft's network: a person
    opening. Clicks from there are Safe Links detonating the link: the person's real click
    comes from their own address (RESEARCH.md §1: warmbly #410/#412)."""
    if not facts.where.microsoft or facts.software.family in ("GmailImageProxy", "YahooMailProxy"):
        return None
    if hit.kind == "click":
        why = "From Microsoft's mail network: Safe Links checking the link, not a person."
        return "machine", "security_scanner", 0.9, why
    return "human", "outlook_web", 0.8, "Outlook on the web loads images from Microsoft's network."


# --- mail clients and browsers --------------------------------------------------------------


@rule("mail_client")
def mail_client(hit: Hit, facts: Facts) -> Finding | None:
    """A mail client by name (uap-core: Outlook, Apple Mail, Thunderbird, Outlook mobile …;
    RESEARCH.md §1 rows for each): the person's own software showing the message."""
    client = facts.signatures.clients.get(facts.software.family)
    if client is None or client.type == "proxy":
        return None
    return "human", client.agent, 0.9, f"{client.name} showed the message."


@rule("browser")
def browser(hit: Hit, facts: Facts) -> Finding | None:
    """A current web browser: webmail showing the pixel, or a person following a link."""
    oldest = facts.signatures.browsers.get(facts.software.family)
    major = facts.software.major
    if oldest is None or major is None or major < oldest:
        return None
    if hit.kind == "click":
        return "human", "browser", 0.75, f"A current {facts.software.family} followed the link."
    return "human", "webmail", 0.7, f"A current {facts.software.family} showed the message."


@rule("stale_browser")
def stale_browser(hit: Hit, facts: Facts) -> Finding | None:
    """A browser years out of date, or the EdgeHTML engine retired in 2021: the frozen images
    security sandboxes run (RESEARCH.md §1, security gateways: "Chrome/42 … Edge/12")."""
    oldest = facts.signatures.browsers.get(facts.software.family)
    major = facts.software.major
    if oldest is None or major is None or major >= oldest:
        return None
    why = f"{facts.software.family} {major} is years old: a scanner's frozen browser."
    return "machine", "security_scanner", 0.85, why


# --- machines -------------------------------------------------------------------------------


@rule("empty_user_agent")
def empty_user_agent(hit: Hit, facts: Facts) -> Finding | None:
    """Every mail client and browser names itself; security gateways often send nothing
    (RESEARCH.md §1, security gateways and HTTP libraries)."""
    if not hit.user_agent.strip():
        return "machine", "security_scanner", 0.9, "No User-Agent: no mail client sends none."
    return None


@rule("head_request")
def head_request(hit: Hit, facts: Facts) -> Finding | None:
    """HEAD asks whether the resource exists without looking at it: link checkers and
    scanners, never a person (RESEARCH.md §1, Office link probe, HTTP libraries)."""
    if hit.method == "HEAD":
        return "machine", "security_scanner", 0.9, "A HEAD request checks a URL; nobody saw it."
    return None


@rule("http_library")
def http_library(hit: Hit, facts: Facts) -> Finding | None:
    """HTTP libraries and command-line tools (RESEARCH.md §1, HTTP libraries and prefetchers)."""
    if any(s in hit.user_agent for s in facts.signatures.automation):
        return "machine", "automation", 0.95, "An HTTP library or script, not a mail client."
    return None


@rule("headless_browser")
def headless_browser(hit: Hit, facts: Facts) -> Finding | None:
    """Headless browsers are what sandboxes drive (RESEARCH.md §1, security gateways)."""
    if any(s in hit.user_agent for s in facts.signatures.headless):
        return "machine", "security_scanner", 0.95, "A headless browser: a sandbox, not a person."
    return None


@rule("named_scanner")
def named_scanner(hit: Hit, facts: Facts) -> Finding | None:
    """Scanners that name themselves (RESEARCH.md §1: Barracuda Sentinel, Office link probe)."""
    for name in facts.signatures.scanners:
        if name in hit.user_agent:
            return "machine", "security_scanner", 0.97, f"{name} identifies itself as a scanner."
    return None


@rule("prefetch_header")
def prefetch_header(hit: Hit, facts: Facts) -> Finding | None:
    """``Sec-Purpose``/``Purpose``/``X-Purpose: prefetch|preview``: fetched ahead of any look
    (RESEARCH.md §1, HTTP libraries and prefetchers: Collie #31)."""
    purpose = hit.purpose.lower()
    if "prefetch" in purpose or "preview" in purpose:
        return "machine", "prefetch", 0.9, f"Marked as a prefetch ({hit.purpose[:40]})."
    return None


# --- weak evidence: only decides together with other rules ----------------------------------


@rule("early_fetch")
def early_fetch(hit: Hit, facts: Facts) -> Finding | None:
    """Within seconds of sending, before a person could plausibly read: gateways fetch a median
    9 s after delivery (RESEARCH.md §1). Weak alone: a fixed "N seconds" rule is not enough."""
    if hit.kind != "open" or not facts.context.early:
        return None
    if facts.software.family in ("GmailImageProxy", "YahooMailProxy") or facts.where.apple_relay:
        return None  # proxies have their own rules
    why = "Fetched within 10 s of sending, faster than people read."
    return "machine", "security_scanner", 0.35, why


@rule("datacentre")
def datacentre(hit: Hit, facts: Facts) -> Finding | None:
    """From a data centre's network: servers fetch from there, people rarely do; a proxy or
    VPN user is the exception, so it is a strong hint, not proof (RESEARCH.md §1, security
    gateways: "data-centre IPs")."""
    if facts.where.datacentre:
        return "machine", "security_scanner", 0.6, "From a data centre, where servers fetch."
    return None


@rule("rewrite_host")
def rewrite_host(hit: Hit, facts: Facts) -> Finding | None:
    """Came through a gateway's link-rewriting host. A person's real click passes there too
    (RESEARCH.md §1), so this is a hint, never a verdict by itself."""
    for header in (hit.referer, hit.via):
        host = (urlsplit(header).hostname or "") if "://" in header else ""
        if host and any(
            host == s or host.endswith("." + s) for s in facts.signatures.rewrite_hosts
        ):
            return "machine", "security_scanner", 0.3, f"Came through {host}, a link scanner."
    return None
