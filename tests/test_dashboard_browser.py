"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright), against
a real ``mailbeacon serve``: signing in, a campaign whose charts say what the API says, a hit
appearing live without a reload, a phone's width, the keyboard, and hostile text that must not
run. With ``MAILBEACON_SCREENSHOTS=DIR`` (``make screenshots``) it saves the README's pictures."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from mailbeacon import accounts
from mailbeacon.store.db import Database
from tests.conftest import SECRET, Persona
from tests.support.server import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root and on a closed network: no sandbox, and none of Chromium's own connections.
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "correct horse battery"  # noqa: S105 (a test user's)
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
)
APPLE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148"
)
LONG_AGO = "2026-11-30T09:00:00Z"
SHOTS = os.environ.get("MAILBEACON_SCREENSHOTS")
HOSTILE_SUBJECT = '"><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>\u202e'
HOSTILE_AGENT = "<script>window.pwned=3</script> Chrome/131.0"
HOSTILE_LINK = 'https://shop.example.test/?q="><script>window.pwned=4</script>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def server(
    tmp_path: Path, db: Database, db_url: str, env: dict[str, str]
) -> Iterator[ServerProcess]:
    kept = {k: v for k, v in env.items() if k not in ("MAILBEACON_DATA", "MAILBEACON_DB",
                                                      "MAILBEACON_PUBLIC_URL")}  # fmt: skip
    settings = {**kept, "MAILBEACON_TRUSTED_PROXIES": "127.0.0.1/32"}
    running = ServerProcess(tmp_path / "serve", db_url, SECRET, env=settings)
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
    yield opened
    context.close()
    assert errors == []


def api(server: ServerProcess, persona: Persona, path: str, body: Any = None) -> Any:
    if body is None:
        answer = httpx.get(server.url + path, headers=persona.auth)
    else:
        answer = httpx.post(server.url + path, json=body, headers=persona.auth)
    assert answer.is_success, answer.text
    return answer.json()


def register(server: ServerProcess, persona: Persona, to: list[str], **fields: Any) -> list[Any]:
    body = {
        "from": persona.email,
        "to": to,
        "subject": "Spring sale",
        "sent_at": LONG_AGO,
        "html": '<p>Hello</p><a href="https://shop.example.test/sale">Sale</a>',
        **fields,
    }
    return api(server, persona, "/api/v1/messages", body)["messages"]  # type: ignore[no-any-return]


def fetch(url: str, agent: str, reader: str = "203.0.113.7") -> None:
    httpx.get(url, headers={"User-Agent": agent, "X-Forwarded-For": reader})


def sign_in(page: Page, server: ServerProcess, db: Database, persona: Persona) -> None:
    db.write(accounts.set_password, persona.id, PASSWORD)
    page.goto(server.url + "/login")
    page.fill("input[name=email]", persona.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_a_campaigns_charts_say_what_the_api_says_and_hits_arrive_live(
    page: Page, server: ServerProcess, db: Database, alice: Persona
) -> None:
    messages = register(server, alice, [f"reader{i}@example.test" for i in range(6)],
                        campaign="spring")  # fmt: skip
    fetch(messages[0]["pixel_url"], THUNDERBIRD)
    fetch(messages[1]["pixel_url"], APPLE_MAIL, "198.51.100.9")
    fetch(messages[2]["pixel_url"], "Mozilla/5.0", "104.28.28.1")  # Apple's prefetch
    fetch(messages[3]["pixel_url"], "")  # a scanner without a User-Agent
    fetch(messages[0]["links"][0]["tracked_url"], THUNDERBIRD)
    # Notifications, allowed: record what the page shows (a headless browser has no desktop).
    page.add_init_script(
        "window.shown = []; window.Notification = function (title, options) {"
        " window.shown.push(title + ' | ' + options.body); };"
        " window.Notification.permission = 'granted';"
    )
    sign_in(page, server, db, alice)
    shot(page, "overview")
    page.goto(server.url + "/campaigns/spring")
    stats = api(server, alice, "/api/v1/campaigns/spring/stats")
    shown = page.locator("#chart-rates td[data-value]").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.value))"
    )
    assert shown == pytest.approx([
        stats["naive_open_rate"], stats["observed_open_rate"], stats["inferred_open_rate"],
        stats["estimated_open_rate"], stats["click_rate"],
    ])  # fmt: skip
    verdicts = page.locator("#chart-verdicts td[data-value]").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.value))"
    )
    by = stats["hits"]["by_verdict"]
    keys = [f"{k}:{v}" for k in ("open", "click") for v in ("human", "machine", "self", "unknown")]
    assert verdicts == [by.get(k, 0) for k in keys]
    assert page.inner_text("#unique-opens") == str(stats["unique_opens"])
    fetch(messages[4]["pixel_url"], THUNDERBIRD, "198.51.100.20")  # while the page is open
    item = page.locator("#feed li", has_text="reader4@example.test")
    item.wait_for(timeout=15_000)
    assert "opened" in item.inner_text()
    assert "Thunderbird (desktop, Windows 10)" in item.inner_text()
    shown = page.evaluate("window.shown")
    assert "reader4@example.test opened “Spring sale” | Thunderbird (desktop, Windows 10)" in shown
    shot(page, "campaign")


def test_pages_fit_a_phone_and_work_from_the_keyboard(
    page: Page, server: ServerProcess, db: Database, alice: Persona
) -> None:
    register(server, alice, ["someone.with.a.very.long.address@example.test"], campaign="spring")
    sign_in(page, server, db, alice)
    page.set_viewport_size({"width": 375, "height": 740})
    for path in ("/", "/messages", "/campaigns/spring", "/settings"):
        page.goto(server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, path
    shot(page, "messages-phone")
    page.goto(server.url + "/messages")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "mailbeacon"


def test_hostile_text_from_requests_and_mail_runs_nothing(
    page: Page, server: ServerProcess, db: Database, alice: Persona
) -> None:
    link = HOSTILE_LINK.replace('"', "&quot;")
    [message] = register(server, alice, ["victim@example.test"], subject=HOSTILE_SUBJECT,
                         campaign=HOSTILE_SUBJECT, html=f'<a href="{link}">x</a>')  # fmt: skip
    fetch(message["pixel_url"], HOSTILE_AGENT)
    fetch(message["links"][0]["tracked_url"], HOSTILE_AGENT)
    sign_in(page, server, db, alice)
    campaigns = page.goto(server.url + "/campaigns")
    assert campaigns is not None
    page.click("table a")  # the hostile campaign's own page
    for path in (None, "/", "/messages", f"/messages/{message['id']}"):
        if path is not None:
            page.goto(server.url + path)
        assert page.evaluate("window.pwned") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(f"{server.url}/messages/{message['id']}")
    assert HOSTILE_AGENT in (page.text_content("#timeline") or "")
    shot(page, "message")
