"""Populations of recipients for the traffic simulator (``tests/simulator.py``).

A ``Mix`` says which mail clients a campaign's recipients read with, how often they open and
click, how many sit behind security gateways, and the rates of everything else that fetches a
pixel or a link. Two presets: a consumer newsletter and a B2B send behind gateways. Build variants
with ``mix.variant(...)`` (``dataclasses.replace``). Comments cite /work/shared/RESEARCH.md
("R§1 <row>" is a row of its section 1).

RESEARCH.md says *how* each fetcher behaves, not how many recipients use each client or how often
people open and click: those numbers (client shares, open propensity, click-to-open rate, the
share of messages whose images Outlook loads …) are assumptions in the ranges the product brief
gives, marked "assumed" below. By default every client's readers open alike, so that "MPP readers
open like everyone else" — the assumption any estimator must make, since their opens are never
seen — holds; ``open_rate_by_client`` breaks it, to see what an estimator does when it does not.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

HOUR = 3600.0
DAY = 24 * HOUR

# How people read their mail; each has its own way of fetching (or not fetching) the pixel.
CLIENTS = (
    "apple_mpp",  # Apple Mail with Mail Privacy Protection on (any mailbox provider)
    "gmail",  # Gmail web and apps (Google's image proxy)
    "yahoo",  # Yahoo/AOL web and apps (Yahoo's mail proxy)
    "outlook_web",  # Outlook.com / Microsoft 365 in a browser
    "outlook_desktop",  # Outlook for Windows
    "apple_mail",  # Apple Mail with MPP off, and other WKWebView clients
    "thunderbird",
    "outlook_mobile",  # Outlook for iOS/Android, and Outlook for Mac
)


@dataclass(frozen=True)
class Mix:
    """A population of recipients: which clients they read with, and how they behave."""

    name: str
    clients: Mapping[str, float]  # share of recipients per client in CLIENTS (sums to 1)
    open_rate: float  # probability that a recipient truly opens
    click_to_open: float  # probability that an opener clicks
    # Per-client open propensity, overriding ``open_rate`` (default: everyone alike).
    open_rate_by_client: Mapping[str, float] = field(default_factory=dict)
    # Security gateways (R§1 "Security gateways").
    gateway_share: float = 0.0  # share of recipients (of companies, with company_size) behind one
    gateway_vendors: Mapping[str, float] = field(default_factory=lambda: {"other": 1.0})
    gateway_pixel_share: float = 0.7  # the rest sweep links only, without the pixel
    company_size: float = 0.0  # mean recipients per company (one egress IP, one gateway); 0: none
    # Images blocked by default (R§1 "Outlook for Windows", "Thunderbird"): the share of messages
    # whose reader lets them load (a trusted sender, or "download pictures"); shares assumed.
    outlook_desktop_load_images: float = 0.35
    thunderbird_load_images: float = 0.30
    gmail_prefetch_share: float = 0.03  # R§1 "Gmail image proxy": prefetch when active in inbox
    gmail_repeat_seen: float = 0.5  # R§3 "Gmail's cache hides repeats" (some of them)
    mpp_extra_device: float = 0.3  # chance of each further Apple device prefetching
    safari_private_relay: float = 0.25  # MPP users whose Safari goes through Private Relay
    repeat_open: float = 0.35  # chance of each further open by an opener
    second_click: float = 0.15  # chance that a clicker clicks a second link
    open_delay_median: float = 3 * HOUR  # first human open after delivery (log-normal)
    open_delay_sigma: float = 1.8
    immediate_open: float = 0.01  # openers who read it as it arrives: within 5 s – 2 min
    self_opens: int = 4  # the sender viewing their own copies (R§3 "Self-opens")
    self_clicks: int = 1
    bot_rate: float = 0.005  # per message: a script fetching the pixel or a link
    prefetch_rate: float = 0.02  # per webmail open: a link prefetched with `Sec-Purpose`
    office_discovery: float = 0.3  # per Outlook-for-Windows click: the Office probe first
    yahoo_link_fetch: float = 0.05  # per Yahoo opener: Yahoo fetching a link (R§1, S/L)
    ipv6: float = 0.3  # recipients whose own address is IPv6
    mpp_ipv6: float = 0.2  # MPP prefetches over IPv6 ("IPv4 mostly")
    horizon: float = 2.5 * DAY  # nothing happens later than this after delivery

    def variant(self, **changes: Any) -> Mix:
        """A copy with some parameters changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    def opens_of(self, client: str) -> float:
        return self.open_rate_by_client.get(client, self.open_rate)

    def visibility(self, client: str) -> float:
        """Chance that one open by this client fetches the pixel itself (human, seen)."""
        if client == "apple_mpp":
            return 0.0  # R§1 "Apple MPP": a later real open is served from Apple's cache
        if client == "outlook_desktop":
            return self.outlook_desktop_load_images
        if client == "thunderbird":
            return self.thunderbird_load_images
        return 1.0


# A consumer newsletter, heavy in Apple Mail with MPP (~45%) and Gmail (~30%). Shares, open
# rate (~36%) and click-to-open (12%) assumed.
B2C_NEWSLETTER = Mix(
    name="B2C_NEWSLETTER",
    clients={
        "apple_mpp": 0.45,
        "gmail": 0.30,
        "yahoo": 0.07,
        "outlook_web": 0.06,
        "outlook_desktop": 0.04,
        "apple_mail": 0.03,
        "thunderbird": 0.02,
        "outlook_mobile": 0.03,
    },
    open_rate=0.36,
    click_to_open=0.12,
    gateway_share=0.02,  # a few consumers' providers scan links too
    gateway_vendors={"other": 0.7, "barracuda": 0.3},
)

# A B2B send: most recipients (by company) behind a security gateway; Outlook for Windows
# dominant, then Microsoft 365 webmail, Google Workspace, Apple Mail, Outlook mobile. Shares, open
# rate (28%), click-to-open (18%), vendors' shares and people reading sooner at work assumed.
B2B_GATEWAYS = Mix(
    name="B2B_GATEWAYS",
    clients={
        "outlook_desktop": 0.45,
        "outlook_web": 0.20,
        "gmail": 0.15,
        "apple_mpp": 0.06,
        "apple_mail": 0.04,
        "outlook_mobile": 0.10,
    },
    open_rate=0.28,
    click_to_open=0.18,
    gateway_share=0.75,
    gateway_vendors={
        "defender": 0.35,
        "mimecast": 0.20,
        "proofpoint": 0.20,
        "barracuda": 0.10,
        "other": 0.15,
    },
    company_size=6.0,
    open_delay_median=1.5 * HOUR,
    self_opens=6,
    self_clicks=2,
)

PRESETS = {mix.name: mix for mix in (B2C_NEWSLETTER, B2B_GATEWAYS)}


@dataclass(frozen=True)
class Mailbox:
    """Who a recipient is, decided before registration so that the address fits the client."""

    client: str
    address: str
    company: int | None


_CONSUMER_DOMAINS = {
    # MPP applies to any mailbox read in Apple Mail (R§1 "Apple MPP").
    "apple_mpp": ("icloud.com", "me.com", "gmail.com", "yahoo.com", "outlook.com"),
    "gmail": ("gmail.com", "googlemail.com"),
    "yahoo": ("yahoo.com", "aol.com"),
    "outlook_web": ("outlook.com", "hotmail.com", "live.com"),
    "outlook_desktop": ("outlook.com", "gmx.de", "comcast.net", "btinternet.com"),
    "apple_mail": ("icloud.com", "gmail.com", "orange.fr"),
    "thunderbird": ("gmx.de", "posteo.de", "web.de", "gmail.com"),
    "outlook_mobile": ("outlook.com", "hotmail.com", "gmail.com"),
}


def choose(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def plan(mix: Mix, n: int, seed: int) -> list[Mailbox]:
    """The recipients' clients, addresses and companies; ``simulate`` uses the same plan."""
    rng = random.Random(f"plan-{seed}")
    mailboxes: list[Mailbox] = []
    company, left = -1, 0
    for i in range(n):
        client = choose(rng, mix.clients)
        if mix.company_size > 0:
            if left == 0:  # companies of geometric size with the given mean
                company += 1
                left = 1 + int(math.log(1 - rng.random()) / math.log(1 - 1 / mix.company_size))
            left -= 1
            address = f"person{i}@corp{company}.example"
            mailboxes.append(Mailbox(client, address, company))
        else:
            address = f"reader{i}@{rng.choice(_CONSUMER_DOMAINS[client])}"
            mailboxes.append(Mailbox(client, address, None))
    return mailboxes
