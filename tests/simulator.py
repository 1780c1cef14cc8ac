"""Simulated tracking traffic with ground truth, built from the facts in /work/shared/RESEARCH.md.

Give it a campaign's registered recipients, a population (``Mix``, see ``tests/support/
population.py``), a seed and the sender's address; it returns the hits that their mail clients,
proxies, gateways, scripts and the sender would cause, as replay lines (DESIGN.md), each with who
truly fetched it, and per message whether the recipient truly opened and clicked. Pure
generation: no database, no clock; random numbers come from ``random.Random`` seeded with the seed
(per recipient, so that one recipient's draws do not shift another's), so a seed always gives the
same traffic.

It models what the world does, not what a classifier would find easy: Apple's prefetch for every
MPP recipient and no trace of their real opens; Outlook and Thunderbird blocking images; Gmail's
proxy fetching when the person opens (and now and then prefetching); gateways that fetch the pixel
seconds after delivery and sweep every link in under a second from a data centre with stale,
headless or empty User-Agents; Safe Links detonating from Microsoft's network; Office probing a
link from the reader's own address just before their click; the sender opening their own copies.
Comments cite the RESEARCH.md row behind each choice ("R§1 <row>" is a row of section 1).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Literal, TypedDict

from tests.support import networks as nets
from tests.support import timing
from tests.support import user_agents as ua
from tests.support.population import (
    B2B_GATEWAYS,
    B2C_NEWSLETTER,
    CLIENTS,
    DAY,
    HOUR,
    PRESETS,
    Mailbox,
    Mix,
    choose,
    plan,
)

__all__ = [
    "B2B_GATEWAYS",
    "B2C_NEWSLETTER",
    "CLIENTS",
    "PRESETS",
    "Line",
    "Mix",
    "Recipient",
    "Traffic",
    "plan",
    "simulate",
]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
Truth = Literal["human", "machine", "self"]
SCANNERS_PER_VENDOR = 12  # a vendor's scanning addresses, reused across recipients
LATEST_OPEN = 2 * HOUR  # before the horizon: room for the clicks that follow an open


@dataclass(frozen=True)
class Recipient:
    """One registered tracked message, as the API returned it."""

    message_id: str
    address: str
    pixel_url: str
    link_urls: list[str]  # tracked URLs, by link position
    sent_at: datetime  # UTC; the best proxy for delivery (R§1, last paragraph)


class Line(TypedDict):
    """A replay line (DESIGN.md: `mailbeacon replay`)."""

    time: str  # ISO 8601 with the zone
    method: str  # GET or HEAD
    url: str  # a tracking URL: the pixel or one of the message's links
    ip: str
    headers: dict[str, str]  # User-Agent (absent when empty), and Sec-Purpose, Referer …


@dataclass
class Traffic:
    """Replay lines sorted by time; per line the truth, the true fetcher and the message."""

    lines: list[Line]
    truth: list[Truth]
    actor: list[str]
    messages: list[str]  # per line: the message id its URL belongs to
    opened: dict[str, bool]  # per message id: the person truly opened
    clicked: dict[str, bool]  # per message id: the person truly clicked
    client: dict[str, str]  # per message id: the client they read with
    gateway: dict[str, str | None]  # per message id: the gateway vendor in front of them

    def jsonl(self) -> list[str]:
        return [json.dumps(line) for line in self.lines]

    @property
    def open_rate(self) -> float:
        return sum(self.opened.values()) / len(self.opened) if self.opened else 0.0

    @property
    def click_rate(self) -> float:
        return sum(self.clicked.values()) / len(self.clicked) if self.clicked else 0.0


def simulate(
    recipients: Sequence[Recipient], mix: Mix, seed: int, sender_ip: str = "203.0.113.7"
) -> Traffic:
    """The traffic ``recipients`` cause under ``mix``; the same seed gives the same traffic."""
    return _Simulation(mix, seed, sender_ip).run(recipients, plan(mix, len(recipients), seed))


@cache
def apple_relay() -> nets.AppleRelay:
    return nets.AppleRelay.load(DATA)


@dataclass(frozen=True)
class _Hit:
    seconds: float  # after delivery
    method: str
    url: str
    ip: str
    agent: str  # "" sends no User-Agent header
    truth: Truth
    actor: str
    extra: tuple[tuple[str, str], ...] = ()  # further headers

    def headers(self) -> dict[str, str]:
        return ({"User-Agent": self.agent} if self.agent else {}) | dict(self.extra)


@dataclass(frozen=True)
class _Person:
    """A recipient's devices: where they are, which browser they click with, their mail app."""

    home_ip: str  # home or office (a company's egress address)
    mobile_ip: str
    phone: bool  # reads and clicks on a phone
    browser: str  # User-Agent of the browser their clicks open in
    mail_agent: str  # User-Agent of their mail client, where it fetches images itself
    private_relay: bool  # Safari behind iCloud Private Relay (R§1 "Private Relay IP ...")

    def ip(self, rng: random.Random) -> str:
        return self.mobile_ip if self.phone and rng.random() < 0.5 else self.home_ip


class _Simulation:
    def __init__(self, mix: Mix, seed: int, sender_ip: str) -> None:
        self.mix = mix
        self.seed = seed
        self.sender_ip = sender_ip
        self.relay = apple_relay()
        rng = random.Random(f"{seed}-scanners")
        self.scanners = {
            vendor: [pool.pick(rng) for _ in range(SCANNERS_PER_VENDOR)]
            for vendor, pool in nets.GATEWAY_POOLS.items()
        }
        self.companies: dict[int, tuple[str, str | None]] = {}

    def run(self, recipients: Sequence[Recipient], mailboxes: Sequence[Mailbox]) -> Traffic:
        events: list[tuple[datetime, str, _Hit]] = []
        traffic = Traffic([], [], [], [], {}, {}, {}, {})
        for index, (recipient, mailbox) in enumerate(zip(recipients, mailboxes, strict=True)):
            rng = random.Random(f"{self.seed}-recipient-{index}")
            mid = recipient.message_id
            hits, traffic.opened[mid], traffic.clicked[mid], traffic.gateway[mid] = self._recipient(
                recipient, mailbox, rng
            )
            traffic.client[mid] = mailbox.client
            events += [(recipient.sent_at + timedelta(seconds=h.seconds), mid, h) for h in hits]
        events += self._sender(recipients)
        # Stable: hits at the same instant keep the order they were made in.
        for when, mid, hit in sorted(events, key=lambda event: event[0]):
            assert hit.seconds <= self.mix.horizon, hit
            traffic.lines.append(
                {
                    "time": when.isoformat(timespec="microseconds"),
                    "method": hit.method,
                    "url": hit.url,
                    "ip": hit.ip,
                    "headers": hit.headers(),
                }
            )
            traffic.truth.append(hit.truth)
            traffic.actor.append(hit.actor)
            traffic.messages.append(mid)
        return traffic

    # ── One recipient ────────────────────────────────────────────────────────────────────────

    def _recipient(
        self, r: Recipient, mailbox: Mailbox, rng: random.Random
    ) -> tuple[list[_Hit], bool, bool, str | None]:
        mix, client = self.mix, mailbox.client
        person = self._person(mailbox, rng)
        opens = self._open_times(rng) if rng.random() < mix.opens_of(client) else []
        clicked = bool(opens) and rng.random() < mix.click_to_open
        vendor = self._gateway_of(mailbox, rng)
        hits = self._gateway(r, vendor, rng) if vendor else []
        hits += self._client(r, client, person, opens, rng)
        if clicked:
            hits += self._clicks(r, client, person, opens[0], rng)
        if rng.random() < mix.bot_rate:
            hits.append(self._script(r, rng))
        return hits, bool(opens), clicked, vendor

    def _person(self, mailbox: Mailbox, rng: random.Random) -> _Person:
        client, mix = mailbox.client, self.mix
        if mailbox.company is not None:
            home = self._company(mailbox.company)[0]
        else:
            home = nets.RESIDENTIAL.pick(rng, mix.ipv6)
        mobile = nets.MOBILE.pick(rng, 0.5)
        phone, mail_agent, relay = False, "", False
        if client in ("apple_mpp", "apple_mail"):
            phone = rng.random() < 0.7
            browser = ua.safari_iphone(rng) if phone else ua.safari_mac(rng)
            mail_agent = ua.APPLE_MAIL_IPHONE if phone else ua.APPLE_MAIL_MAC
            relay = client == "apple_mpp" and rng.random() < mix.safari_private_relay
        elif client in ("gmail", "yahoo"):  # the proxy fetches; only the click browser matters
            roll = rng.random()
            phone = roll < 0.6
            browser = (
                ua.chrome_android(rng)
                if roll < 0.4
                else ua.safari_iphone(rng)
                if phone
                else ua.desktop_browser(rng, windows=rng.random() < 0.75)
            )
        elif client == "outlook_web":
            browser = ua.desktop_browser(rng, windows=rng.random() < 0.85)
        elif client == "outlook_desktop":
            browser = ua.desktop_browser(rng)
            mail_agent = rng.choice(ua.OUTLOOK_DESKTOP)
        elif client == "thunderbird":
            browser = ua.firefox_desktop(rng)
            mail_agent = rng.choice(ua.THUNDERBIRD)
        else:  # outlook_mobile: iOS, Android, or Outlook for Mac
            roll = rng.random()
            phone = roll < 0.85
            if roll < 0.5:
                browser, mail_agent = ua.safari_iphone(rng), ua.OUTLOOK_IOS
            elif phone:
                browser, mail_agent = ua.chrome_android(rng), ua.OUTLOOK_ANDROID
            else:
                browser, mail_agent = ua.safari_mac(rng), ua.OUTLOOK_MAC
        return _Person(home, mobile, phone, browser, mail_agent, relay)

    def _company(self, company: int) -> tuple[str, str | None]:
        """(egress address, gateway vendor or None) of a company, the same for all its staff."""
        found = self.companies.get(company)
        if found is None:
            rng = random.Random(f"{self.seed}-company-{company}")
            egress = nets.CORPORATE.pick(rng)
            behind = rng.random() < self.mix.gateway_share
            found = (egress, choose(rng, self.mix.gateway_vendors) if behind else None)
            self.companies[company] = found
        return found

    def _gateway_of(self, mailbox: Mailbox, rng: random.Random) -> str | None:
        if mailbox.company is not None:
            return self._company(mailbox.company)[1]
        if rng.random() < self.mix.gateway_share:
            return choose(rng, self.mix.gateway_vendors)
        return None

    def _open_times(self, rng: random.Random) -> list[float]:
        """Seconds after delivery of each open: minutes to days, heavy-tailed; a few people
        watching their inbox open within a couple of minutes, almost never within 10 s."""
        mix = self.mix
        last = mix.horizon - LATEST_OPEN
        if rng.random() < mix.immediate_open:  # log-uniform over 5 s – 2 min
            first = 5.0 * math.exp(rng.random() * math.log(120 / 5))
        else:
            first = timing.lognormal(rng, mix.open_delay_median, mix.open_delay_sigma, 60.0, last)
        opens = [first]
        while len(opens) < 5 and rng.random() < mix.repeat_open:
            again = opens[-1] + timing.lognormal(rng, 2 * HOUR, 1.5, 60.0, DAY)
            if again > last:
                break
            opens.append(again)
        return opens

    # ── Gateways (R§1 "Security gateways") ───────────────────────────────────────────────────

    def _gateway(self, r: Recipient, vendor: str, rng: random.Random) -> list[_Hit]:
        """A pixel fetch seconds after delivery, then every link in one sub-second sweep from
        one data-centre address, timed as fitted in ``timing``; some gateways skip the pixel."""
        # R§1 "Security gateways": Defender/Safe Links detonates from Microsoft's network with a
        # browser's UA; R§1 "Outlook.com …": Microsoft-network clicks are scanners.
        actor = "safe_links" if vendor == "defender" else "security_scanner"
        pixel_at, sweep_at = timing.gateway_times(rng)
        scanners = self.scanners[vendor]
        ip = rng.choice(scanners)

        def agent() -> str:
            if vendor == "defender":
                return rng.choice((ua.edge_windows, ua.chrome_windows))(rng)
            if vendor == "barracuda" and rng.random() < 0.5:
                return ua.BARRACUDA  # R§1: Barracuda's own UA
            return ua.scanner_browser_like(rng)

        sweep_agent = agent()
        hits = []
        if rng.random() < self.mix.gateway_pixel_share:
            pixel_ip = ip if rng.random() < 0.5 else rng.choice(scanners)
            pixel_agent = sweep_agent if rng.random() < 0.6 else agent()
            hits.append(_Hit(pixel_at, "GET", r.pixel_url, pixel_ip, pixel_agent, "machine", actor))
        # R§1 "… and HEAD requests"; some scanners rotate their UA from one request to the next.
        method = "HEAD" if rng.random() < 0.15 else "GET"
        rotating = rng.random() < 0.2
        order = list(range(len(r.link_urls)))
        if rng.random() < 0.3:
            rng.shuffle(order)
        for offset, link in zip(timing.sweep_offsets(rng, len(order)), order, strict=True):
            url, link_agent = r.link_urls[link], agent() if rotating else sweep_agent
            hits.append(_Hit(sweep_at + offset, method, url, ip, link_agent, "machine", actor))
        return hits

    # ── The recipient's mail client ──────────────────────────────────────────────────────────

    def _client(
        self, r: Recipient, client: str, person: _Person, opens: list[float], rng: random.Random
    ) -> list[_Hit]:
        """What the reader's mail client (or its provider's proxy) fetches."""
        if client == "apple_mpp":
            return self._apple_mpp(r, rng)
        if client == "gmail":
            hits = self._gmail(r, opens, rng)
        elif client == "yahoo":
            hits = self._yahoo(r, opens, rng)
        elif client == "outlook_web":
            # R§1 "Outlook.com / Microsoft 365 webmail": images come from Microsoft's network
            # (with the reader's browser UA): human on the pixel.
            hits = [
                _Hit(at, "GET", r.pixel_url, nets.MICROSOFT_WEBMAIL.pick(rng), person.browser,
                     "human", "outlook_web")
                for at in opens
            ]  # fmt: skip
        elif client in ("outlook_desktop", "thunderbird") and rng.random() >= self.mix.visibility(
            client
        ):
            # R§1 "Outlook for Windows", "Thunderbird": images blocked by default; the reader
            # lets them load for this message (trusted sender, "download pictures") or never.
            hits = []
        else:
            # R§1 "Outlook for Windows", "Thunderbird" (images let in), "Apple Mail with MPP
            # off", "Outlook mobile / Mac": the client fetches from the reader's own address.
            hits = [
                _Hit(at, "GET", r.pixel_url, person.ip(rng), person.mail_agent, "human", client)
                for at in opens
            ]
        return hits + self._prefetches(r, client, person, opens, rng)

    def _apple_mpp(self, r: Recipient, rng: random.Random) -> list[_Hit]:
        """R§1 "Apple MPP": a prefetch for every recipient whether or not they read, when the
        device downloads mail (often later, on Wi-Fi or charging), UA exactly `Mozilla/5.0`,
        from a Private Relay egress address; each further Apple device prefetches too. Real
        opens are served from Apple's cache: they leave no hit."""
        at = timing.lognormal(rng, 15 * 60, 1.7, 30.0, self.mix.horizon)
        hits = [self._mpp(r, at, rng)]
        while len(hits) < 4 and rng.random() < self.mix.mpp_extra_device:
            at = timing.lognormal(rng, HOUR, 1.7, 60.0, self.mix.horizon)
            hits.append(self._mpp(r, at, rng))
        return hits

    def _mpp(self, r: Recipient, at: float, rng: random.Random) -> _Hit:
        ip = self.relay.pick(rng, self.mix.mpp_ipv6)
        return _Hit(at, "GET", r.pixel_url, ip, ua.APPLE_MPP, "machine", "apple_mpp")

    def _gmail(self, r: Recipient, opens: list[float], rng: random.Random) -> list[_Hit]:
        hits = []
        # R§1 "Gmail image proxy": "may prefetch when the user is active in the inbox (seconds
        # after delivery)": not an open.
        if rng.random() < self.mix.gmail_prefetch_share:
            ip, at = nets.GOOGLE_PROXY.pick(rng), rng.uniform(2.0, 8.0)
            hits.append(
                _Hit(at, "GET", r.pixel_url, ip, ua.GMAIL_PROXY, "machine", "gmail_prefetch")
            )
        # Fetched when the person opens: a real open. R§3: the proxy's cache hides some repeats.
        for n, at in enumerate(opens):
            if n == 0 or rng.random() < self.mix.gmail_repeat_seen:
                ip = nets.GOOGLE_PROXY.pick(rng)
                hits.append(
                    _Hit(at, "GET", r.pixel_url, ip, ua.GMAIL_PROXY, "human", "gmail_proxy")
                )
        return hits

    def _yahoo(self, r: Recipient, opens: list[float], rng: random.Random) -> list[_Hit]:
        # R§1 "Yahoo/AOL mail proxy": on the pixel a real open; on a link a machine (S/L).
        hits = [
            _Hit(at, "GET", r.pixel_url, nets.YAHOO_PROXY.pick(rng), ua.YAHOO_PROXY, "human",
                 "yahoo_proxy")
            for at in opens
        ]  # fmt: skip
        if opens and rng.random() < self.mix.yahoo_link_fetch:
            at, url = opens[0] + rng.uniform(1.0, 5.0), rng.choice(r.link_urls)
            ip = nets.YAHOO_PROXY.pick(rng)
            hits.append(_Hit(at, "GET", url, ip, ua.YAHOO_PROXY, "machine", "yahoo_proxy"))
        return hits

    def _prefetches(
        self, r: Recipient, client: str, person: _Person, opens: list[float], rng: random.Random
    ) -> list[_Hit]:
        """R§1 "HTTP libraries and prefetchers": a browser prefetching a link of the message open
        in webmail (`Sec-Purpose: prefetch`), from the reader's own address: not a click."""
        if client not in ("outlook_web", "gmail", "yahoo") or person.phone:
            return []
        return [
            _Hit(at + rng.uniform(0.3, 3.0), "GET", rng.choice(r.link_urls), person.ip(rng),
                 person.browser, "machine", "browser_prefetch", (("Sec-Purpose", "prefetch"),))
            for at in opens
            if rng.random() < self.mix.prefetch_rate
        ]  # fmt: skip

    # ── Clicks ───────────────────────────────────────────────────────────────────────────────

    def _clicks(
        self, r: Recipient, client: str, person: _Person, opened_at: float, rng: random.Random
    ) -> list[_Hit]:
        """One link (sometimes two, never a sweep), seconds to minutes after the open, in the
        reader's browser from their own address. R§1 "Apple MPP": clicks are not proxied."""
        weights = [0.45, 0.25, 0.15, 0.10, 0.05][: len(r.link_urls)]
        links = [rng.choices(range(len(r.link_urls)), weights)[0]]
        if len(r.link_urls) > 1 and rng.random() < self.mix.second_click:
            links.append(rng.choice([i for i in range(len(r.link_urls)) if i != links[0]]))
        at = opened_at + timing.lognormal(rng, 25.0, 1.0, 2.0, 30 * 60)
        hits = []
        for n, link in enumerate(links):
            if n:
                at += timing.lognormal(rng, 60.0, 1.0, 2.0, HOUR)
            url = r.link_urls[link]
            # R§1 "Private Relay IP with a normal browser UA": a Safari user behind Private Relay.
            ip = self.relay.pick(rng, 0.5) if person.private_relay else person.ip(rng)
            extra: tuple[tuple[str, str], ...] = ()
            if client == "outlook_web":
                extra = (("Referer", "https://outlook.live.com/"),)
            elif client == "yahoo" and not person.phone:
                extra = (("Referer", "https://mail.yahoo.com/"),)
            if client == "outlook_desktop" and rng.random() < self.mix.office_discovery:
                # R§1 "Office link probe": HEAD from the reader's machine just before the click.
                probe_at = at - rng.uniform(0.1, 0.8)
                hits.append(
                    _Hit(probe_at, "HEAD", url, ip, ua.OFFICE_DISCOVERY, "machine",
                         "office_discovery")
                )  # fmt: skip
            hits.append(_Hit(at, "GET", url, ip, person.browser, "human", "browser_click", extra))
        return hits

    # ── Scripts and the sender ───────────────────────────────────────────────────────────────

    def _script(self, r: Recipient, rng: random.Random) -> _Hit:
        """R§1 "HTTP libraries and prefetchers": curl, python-requests … from a data centre."""
        url = r.pixel_url if rng.random() < 0.6 else rng.choice(r.link_urls)
        method = "HEAD" if rng.random() < 0.2 else "GET"
        at = rng.uniform(60.0, self.mix.horizon)
        agent = rng.choice(ua.HTTP_LIBRARIES)
        return _Hit(at, method, url, nets.BOTS.pick(rng), agent, "machine", "http_library")

    def _sender(self, recipients: Sequence[Recipient]) -> list[tuple[datetime, str, _Hit]]:
        """R§3 "Self-opens": the sender views their own copies (some right after sending) from
        their own address, in their mail client; and tries a link or two."""
        if not recipients:
            return []
        rng = random.Random(f"{self.seed}-sender")
        mail_agent = rng.choice((ua.APPLE_MAIL_MAC, ua.OUTLOOK_DESKTOP[0], ua.THUNDERBIRD[0]))
        browser = ua.desktop_browser(rng, windows=mail_agent != ua.APPLE_MAIL_MAC)
        out = []
        for n in range(self.mix.self_opens + self.mix.self_clicks):
            r = rng.choice(recipients)
            if rng.random() < 0.3:
                at = rng.uniform(5.0, 60.0)
            else:
                at = timing.lognormal(rng, 20 * 60, 1.5, 60.0, self.mix.horizon)
            if n < self.mix.self_opens:
                hit = _Hit(at, "GET", r.pixel_url, self.sender_ip, mail_agent, "self", "sender")
            else:
                url = rng.choice(r.link_urls)
                hit = _Hit(at, "GET", url, self.sender_ip, browser, "self", "sender")
            out.append((r.sent_at + timedelta(seconds=at), r.message_id, hit))
        return out
