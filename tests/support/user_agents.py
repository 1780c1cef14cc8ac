"""The User-Agent strings the simulated fetchers send, with the RESEARCH.md row behind each.

"Current" browsers are those of late 2026 (Chrome/Edge ~150–156, Firefox ~145, Safari 26; iOS
26 still reports ``iPhone OS 18_6``). Mail clients' strings are quoted from R§1.
"""

from __future__ import annotations

import random

# R§1 "Apple Mail Privacy Protection": User-Agent is exactly `Mozilla/5.0`.
APPLE_MPP = "Mozilla/5.0"

# R§1 "Gmail image proxy" (full string quoted there).
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)

# R§1 "Yahoo/AOL mail proxy".
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"

# R§1 "Apple Mail with MPP off, other WKWebView clients": WebKit with no `Safari/` token.
APPLE_MAIL_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
APPLE_MAIL_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)

# R§1 "Outlook for Windows" (uap-core tests; gophish issues).
OUTLOOK_DESKTOP = (
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
    "Microsoft Outlook 16.0.6366; ms-office; MSOffice 16)",
)

# R§1 "Outlook mobile / Mac" (yauaa #224; device-detector pim.yml).
OUTLOOK_IOS = "Outlook-iOS/709.2226530.prod.iphone (3.24.1)"
OUTLOOK_ANDROID = "Outlook-iOS-Android/1.0"
OUTLOOK_MAC = "MacOutlook/16.46.21021202 (Intelx64 Mac OS X 11.2.2 (Build 20D80))"

# R§1 "Thunderbird".
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:140.0) Gecko/20100101 Thunderbird/140.2.0",
)

# R§1 "Security gateways": stale UAs, HeadlessChrome, empty UA; R§5 "Browser tests": a
# Playwright Chromium fetch carries `HeadlessChrome/156`.
STALE_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36"
)
# R§1 "Security gateways": Barracuda's own UA.
BARRACUDA = "Barracuda Sentinel (EE)"
# R§1 "Office link probe".
OFFICE_DISCOVERY = "Microsoft Office Existence Discovery"
# R§1 "HTTP libraries and prefetchers".
HTTP_LIBRARIES = (
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Wget/1.21.4",
)


def chrome_windows(rng: random.Random) -> str:
    return (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{rng.randint(150, 156)}.0.0.0 Safari/537.36"
    )


def edge_windows(rng: random.Random) -> str:
    version = rng.randint(150, 156)
    return (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{version}.0.0.0 Safari/537.36 Edg/{version}.0.0.0"
    )


def chrome_mac(rng: random.Random) -> str:
    return (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{rng.randint(150, 156)}.0.0.0 Safari/537.36"
    )


def chrome_android(rng: random.Random) -> str:
    return (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{rng.randint(150, 156)}.0.0.0 Mobile Safari/537.36"
    )


def firefox_desktop(rng: random.Random) -> str:
    version = rng.randint(143, 146)
    system = rng.choice(("Windows NT 10.0; Win64; x64", "X11; Linux x86_64"))
    return f"Mozilla/5.0 ({system}; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"


def safari_mac(rng: random.Random) -> str:
    return (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Version/26.{rng.randint(0, 2)} Safari/605.1.15"
    )


def safari_iphone(rng: random.Random) -> str:
    return (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
        f"(KHTML, like Gecko) Version/26.{rng.randint(0, 2)} Mobile/15E148 Safari/604.1"
    )


def desktop_browser(rng: random.Random, windows: bool = True) -> str:
    """A current desktop browser, in rough market shares."""
    if not windows:
        return rng.choice((safari_mac, chrome_mac))(rng)
    roll = rng.random()
    if roll < 0.6:
        return chrome_windows(rng)
    if roll < 0.88:
        return edge_windows(rng)
    return firefox_desktop(rng)


def scanner_browser_like(rng: random.Random) -> str:
    """R§1 "Security gateways": browser-like (current), stale, or headless UAs; or none."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice((chrome_windows, edge_windows))(rng)
    if roll < 0.65:
        return STALE_EDGE
    if roll < 0.85:
        return HEADLESS_CHROME
    return ""  # no User-Agent header at all
