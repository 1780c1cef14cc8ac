"""Signing in to the dashboard (`/login`, `/logout`), what guards its pages (sessions, CSRF,
throttling), its API keys (`/settings/keys`), and the commands that set passwords.

Personas: alice signs in; bob is another user, whose key alice must not touch; mallory is
another site, or someone guessing passwords.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailbeacon import accounts, sessions
from mailbeacon.cli import app as cli
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.store import sessions as store
from mailbeacon.store.db import Database
from mailbeacon.web.app import App
from mailbeacon.web.auth import SignedIn, signed_in
from mailbeacon.web.services import Services
from tests.conftest import PEER, Persona
from tests.support.peers import Peers

PASSWORD = "correct horse battery"  # noqa: S105 - a test persona's
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
MALLORY = "https://evil.example"
runner = CliRunner()


@signed_in
async def whoami(request: Request, me: SignedIn) -> Response:
    """A page for signed-in users, as the dashboard's are: it shows who is signed in."""
    return JSONResponse({"email": me.email, "csrf": me.csrf, "method": request.method})


def node(services: Services) -> TestClient:
    app = App(services)
    app.starlette.router.routes.append(Route("/whoami", whoami, methods=["GET", "POST"]))
    return TestClient(Peers(app), base_url="https://t.example.test", client=PEER)


@pytest.fixture
def web(services: Services) -> Iterator[TestClient]:
    with node(services) as client:
        yield client


@pytest.fixture
def alice_can_sign_in(db: Database, alice: Persona) -> Persona:
    db.write(accounts.set_password, alice.id, PASSWORD)
    return alice


def sign_in(
    web: TestClient, email: str, password: str, *, peer: str = PEER[0], **fields: str
) -> httpx.Response:
    return web.post(
        "/login",
        data={"email": email, "password": password, **fields},
        headers={"X-Test-Peer": peer},
        follow_redirects=False,
    )


def csrf_of(web: TestClient) -> str:
    token: str = web.get("/whoami").json()["csrf"]
    return token


def session_cookie(response: httpx.Response) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if c.startswith("mb_session=")]
    return cookie


# --- signing in -----------------------------------------------------------------------------


def test_the_login_page_has_the_form_and_strict_headers(web: TestClient) -> None:
    page = web.get("/login")
    assert page.status_code == 200
    for field in ('name="email"', 'name="password"', 'name="next"', 'action="/login"'):
        assert field in page.text
    assert 'autocomplete="username"' in page.text
    assert 'autocomplete="current-password"' in page.text
    assert 'class="login"' in page.text
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"


def test_the_right_password_signs_in_with_a_guarded_cookie(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    response = sign_in(web, "Alice@Example.test", PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = session_cookie(response).lower()
    for flag in ("httponly", "samesite=lax", "path=/", "secure", "max-age=1209600"):
        assert flag in cookie.split("; "), cookie
    assert web.get("/whoami").json()["email"] == "alice@example.test"


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    web: TestClient, alice_can_sign_in: Persona, bob: Persona
) -> None:
    wrong = sign_in(web, "alice@example.test", "not the password")
    unknown = sign_in(web, "nobody@example.test", PASSWORD)
    without_password = sign_in(web, "bob@example.test", "")  # bob has none: he cannot sign in
    for response in (wrong, unknown, without_password):
        assert response.status_code == 401
        assert "Wrong email or password." in response.text
        assert 'name="password"' in response.text
        assert "mb_session" not in response.headers.get("set-cookie", "")
    assert web.get("/whoami", follow_redirects=False).status_code == 303


def test_an_earlier_page_is_where_signing_in_leads(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    sent = web.get("/whoami?x=1&y=2", follow_redirects=False)
    assert sent.status_code == 303
    assert sent.headers["location"] == "/login?next=%2Fwhoami%3Fx%3D1%26y%3D2"
    form = web.get(sent.headers["location"])
    assert 'name="next" value="/whoami?x=1&amp;y=2"' in form.text
    response = sign_in(web, alice_can_sign_in.email, PASSWORD, next="/whoami?x=1&y=2")
    assert response.headers["location"] == "/whoami?x=1&y=2"
    assert web.get(response.headers["location"]).json()["email"] == alice_can_sign_in.email


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example", "https://evil.example", "/\\evil.example", "/\t/evil.example", "evil", ""],
)
def test_next_never_leads_to_another_site(
    web: TestClient, alice_can_sign_in: Persona, next_path: str
) -> None:
    response = sign_in(web, alice_can_sign_in.email, PASSWORD, next=next_path)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_a_signed_in_visitor_of_the_login_page_goes_on(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    response = web.get("/login?next=/whoami", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/whoami")


def test_another_site_cannot_sign_anyone_in(web: TestClient, alice_can_sign_in: Persona) -> None:
    """Login CSRF: a form on mallory's site would sign the visitor into mallory's account."""
    for header in ({"Origin": MALLORY}, {"Referer": MALLORY + "/page"}, {"Origin": "null"}):
        response = web.post(
            "/login",
            data={"email": alice_can_sign_in.email, "password": PASSWORD},
            headers=header,
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
    response = web.post(
        "/login",
        data={"email": alice_can_sign_in.email, "password": PASSWORD},
        headers={"Origin": "https://t.example.test"},
        follow_redirects=False,
    )
    assert response.status_code == 303


# --- sessions -------------------------------------------------------------------------------


def test_a_stranger_is_sent_to_the_login_page(web: TestClient) -> None:
    for method in ("GET", "POST"):
        response = web.request(method, "/whoami", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
    forged = web.get("/whoami", headers={"Cookie": "mb_session=forged"}, follow_redirects=False)
    assert forged.status_code == 303


def test_signing_out_ends_the_session_on_the_server(
    web: TestClient, db: Database, alice_can_sign_in: Persona
) -> None:
    token = session_cookie(sign_in(web, alice_can_sign_in.email, PASSWORD)).split(";")[0]
    csrf = csrf_of(web)
    response = web.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert "max-age=0" in session_cookie(response).lower()
    assert db.read(lambda conn: conn.execute("SELECT * FROM sessions")) == []
    # A copy of the cookie kept from before is worth nothing now.
    copied = web.get("/whoami", headers={"Cookie": token}, follow_redirects=False)
    assert copied.status_code == 303


def test_a_new_password_signs_the_user_out_everywhere(
    web: TestClient, db: Database, alice_can_sign_in: Persona
) -> None:
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    db.write(accounts.set_password, alice_can_sign_in.id, "another long password")
    assert web.get("/whoami", follow_redirects=False).status_code == 303


def test_a_session_lasts_fourteen_days_from_its_last_use(
    web: TestClient, db: Database, alice_can_sign_in: Persona
) -> None:
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    minute = 60_000_000

    def times() -> tuple[int, int]:
        row = db.read(lambda conn: conn.one("SELECT last_seen_at, expires_at FROM sessions"))
        assert row is not None
        return int(row[0]), int(row[1])

    seen, expires = times()
    assert expires - seen == sessions.LIFETIME
    quiet = web.get("/whoami")  # within the minute: nothing written, the cookie stays
    assert times() == (seen, expires)
    assert "set-cookie" not in quiet.headers
    db.write(lambda c: c.execute("UPDATE sessions SET last_seen_at = last_seen_at - ?", (minute,)))
    slid = web.get("/whoami")
    assert times()[0] > seen
    assert times()[1] > expires
    assert "max-age=1209600" in session_cookie(slid).lower()
    db.write(lambda c: c.execute("UPDATE sessions SET expires_at = ?", (accounts.now_us() - 1,)))
    assert web.get("/whoami", follow_redirects=False).status_code == 303


# --- CSRF -----------------------------------------------------------------------------------


def test_an_unsafe_request_without_the_session_token_is_refused(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    csrf = csrf_of(web)
    for refused in (
        web.post("/whoami"),
        web.post("/whoami", data={"csrf": "not-the-token"}),
        web.post("/whoami", data={"csrf": csrf + "x"}),
        web.post("/whoami", data={"csrf": "é"}),
        web.post("/whoami", data={"csrf": csrf}, headers={"Origin": MALLORY}),
        web.post("/whoami", data={"csrf": csrf}, headers={"Referer": MALLORY + "/"}),
        web.post("/logout", data={"csrf": "not-the-token"}),
    ):
        assert refused.status_code == 403
        assert "This form was refused" in refused.text
        assert refused.headers["content-security-policy"] == CSP
    assert web.post("/whoami", data={"csrf": csrf}).json()["method"] == "POST"
    fetched = web.post(
        "/whoami", headers={"X-CSRF-Token": csrf, "Origin": "https://t.example.test"}
    )
    assert fetched.status_code == 200
    assert web.get("/whoami").status_code == 200  # the session is still there


# --- throttling -----------------------------------------------------------------------------


def guess(
    web: TestClient, times: int, *, email: str = "", peers: str = "198.51.100.{}", first: int = 0
) -> None:
    """Wrong passwords, for ``email`` (else for another email each time), from ``peers``
    (formatted with each try's number)."""
    for n in range(first, first + times):
        tried = sign_in(web, email or f"user{n}@example.test", "wrong guess", peer=peers.format(n))
        assert tried.status_code == 401


def test_five_failures_for_one_email_hold_it_back(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    guess(web, 5, email=alice_can_sign_in.email)  # each from another address
    held = sign_in(web, alice_can_sign_in.email, PASSWORD, peer="198.51.100.9")
    assert held.status_code == 429
    assert 890 <= int(held.headers["retry-after"]) <= 900
    assert "Too many failed sign-ins" in held.text
    assert "set-cookie" not in held.headers


def test_five_failures_from_one_address_hold_it_back(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    guess(web, 5, peers=PEER[0])
    assert sign_in(web, alice_can_sign_in.email, PASSWORD).status_code == 429
    # The machines of one IPv6 /64 count as one address.
    guess(web, 5, peers="2001:db8::{}")
    assert sign_in(web, alice_can_sign_in.email, PASSWORD, peer="2001:db8::ff").status_code == 429
    assert sign_in(web, alice_can_sign_in.email, PASSWORD, peer="192.0.2.77").status_code == 303


def test_signing_in_clears_the_failures_of_the_email(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    guess(web, 4, email=alice_can_sign_in.email)
    assert sign_in(web, alice_can_sign_in.email, PASSWORD, peer="192.0.2.80").status_code == 303
    guess(web, 4, email=alice_can_sign_in.email, first=10)


def test_signing_in_does_not_count_against_the_address(
    web: TestClient, alice_can_sign_in: Persona
) -> None:
    """An office behind one address, whose people sign in all morning."""
    for _ in range(6):
        web.cookies.clear()
        assert sign_in(web, alice_can_sign_in.email, PASSWORD).status_code == 303


def test_every_node_counts_the_same_failures(
    web: TestClient, settings: Settings, alice_can_sign_in: Persona
) -> None:
    guess(web, 5, email=alice_can_sign_in.email)
    with node(Services.open(dataclasses.replace(settings, data=settings.data / "other"))) as other:
        assert sign_in(other, alice_can_sign_in.email, PASSWORD).status_code == 429


# --- passwords ------------------------------------------------------------------------------


def test_only_an_argon2_hash_of_the_password_is_stored(
    db: Database, alice_can_sign_in: Persona
) -> None:
    found = db.read(store.password_of, alice_can_sign_in.email)
    assert found is not None
    assert found[1] is not None
    assert found[1].startswith("$argon2id$")
    assert PASSWORD not in found[1]


def test_a_password_of_fewer_than_ten_characters_is_refused(db: Database, alice: Persona) -> None:
    with pytest.raises(ValueError, match="at least 10 characters"):
        db.write(accounts.set_password, alice.id, "123456789")
    assert db.read(store.password_of, alice.email) == (alice.id, None)


def test_a_hash_made_with_weaker_parameters_is_replaced_at_sign_in(
    web: TestClient, db: Database, alice: Persona
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    db.write(store.set_password_hash, alice.id, weak)
    assert sign_in(web, alice.email, PASSWORD).status_code == 303
    found = db.read(store.password_of, alice.email)
    assert found is not None
    assert found[1] != weak
    assert not PasswordHasher().check_needs_rehash(found[1] or "")
    web.cookies.clear()
    assert sign_in(web, alice.email, PASSWORD).status_code == 303


# --- API keys of the settings page ----------------------------------------------------------


def test_a_new_key_is_shown_once_and_works(
    web: TestClient, db: Database, alice_can_sign_in: Persona
) -> None:
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    page = web.post("/settings/keys", data={"csrf": csrf_of(web)})
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    key = re.search(r'id="new-api-key">(mb_[A-Za-z0-9_-]{40,})<', page.text)
    assert key, page.text
    listed = db.read(queries.api_keys_of, alice_can_sign_in.id)
    assert [k.prefix for k in listed] == [alice_can_sign_in.api_key[:8], key.group(1)[:8]]
    used = web.get("/api/v1/settings", headers={"Authorization": f"Bearer {key.group(1)}"})
    assert used.status_code == 200


def test_a_revoked_key_stops_working_and_only_its_owner_can_revoke_it(
    web: TestClient, db: Database, alice_can_sign_in: Persona, bob: Persona
) -> None:
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    csrf = csrf_of(web)
    [bobs] = db.read(queries.api_keys_of, bob.id)
    response = web.post(f"/settings/keys/{bobs.id}/revoke", data={"csrf": csrf})
    assert response.status_code == 404
    assert web.get("/api/v1/settings", headers=bob.auth).status_code == 200
    [alices] = db.read(queries.api_keys_of, alice_can_sign_in.id)
    revoked = web.post(
        f"/settings/keys/{alices.id}/revoke", data={"csrf": csrf}, follow_redirects=False
    )
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/settings#keys")
    assert web.get("/api/v1/settings", headers=alice_can_sign_in.auth).status_code == 401
    assert db.read(queries.api_keys_of, alice_can_sign_in.id) == []


def test_the_keys_need_a_session_and_its_token(web: TestClient, alice_can_sign_in: Persona) -> None:
    assert web.post("/settings/keys", follow_redirects=False).headers["location"] == "/login"
    sign_in(web, alice_can_sign_in.email, PASSWORD)
    assert web.post("/settings/keys").status_code == 403
    assert web.post("/settings/keys/1/revoke").status_code == 403


def test_the_dashboard_files_are_served(web: TestClient) -> None:
    for path in ("/static/app.css", "/static/app.js"):
        assert web.get(path).status_code == 200


# --- the commands ---------------------------------------------------------------------------


def test_users_add_with_a_password_lets_the_user_sign_in(
    web: TestClient, env: dict[str, str]
) -> None:
    added = runner.invoke(
        cli, ["users", "add", "carol@example.test", "--password", PASSWORD], env=env
    )
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    assert sign_in(web, "carol@example.test", PASSWORD).status_code == 303


def test_users_add_can_ask_for_the_password(web: TestClient, env: dict[str, str]) -> None:
    added = runner.invoke(
        cli, ["users", "add", "dan@example.test", "--ask-password"], env=env,
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    assert sign_in(web, "dan@example.test", PASSWORD).status_code == 303


def test_users_add_refuses_a_short_password_and_adds_no_one(
    db: Database, env: dict[str, str]
) -> None:
    added = runner.invoke(
        cli, ["users", "add", "erin@example.test", "--password", "short"], env=env
    )
    assert added.exit_code == 1
    assert "at least 10 characters" in added.output
    assert db.read(queries.user_by_email, "erin@example.test") is None


def test_users_password_sets_a_new_password(
    web: TestClient, env: dict[str, str], alice_can_sign_in: Persona
) -> None:
    email = alice_can_sign_in.email
    given = runner.invoke(
        cli, ["users", "password", email, "--password", "a new password!"], env=env
    )
    assert given.exit_code == 0, given.output
    assert sign_in(web, email, PASSWORD).status_code == 401
    assert sign_in(web, email, "a new password!").status_code == 303
    asked = runner.invoke(
        cli, ["users", "password", email], env=env, input="third password\nthird password\n"
    )
    assert asked.exit_code == 0, asked.output
    web.cookies.clear()
    assert sign_in(web, email, "third password", peer="192.0.2.90").status_code == 303


def test_users_password_says_when_there_is_no_such_user(env: dict[str, str]) -> None:
    result = runner.invoke(
        cli, ["users", "password", "nobody@example.test", "--password", PASSWORD], env=env
    )
    assert result.exit_code == 1
    assert "no user 'nobody@example.test'" in result.output
