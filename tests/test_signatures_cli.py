"""``mailbeacon signatures`` and the Apple egress list behind it, over real files and real HTTP.

The web server is a throwaway ``http.server`` on loopback standing in for Apple's; it serves a
CSV in Apple's column format built from the shared copy of the list.
"""

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailbeacon.classify import apple
from mailbeacon.classify.apple import AppleEgress, EgressListError, Refresher
from mailbeacon.cli import app
from tests.conftest import SECRET
from tests.support.server import free_port

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IPV4_LIST = SHARED_DATA / "apple-private-relay-egress-ipv4.txt"
IPV6_LIST = SHARED_DATA / "apple-private-relay-egress-ipv6.txt"
GARBAGE = "<!DOCTYPE html><html><body><h1>We'll be back soon</h1></body></html>\n"

runner = CliRunner()


def first_address(path: Path) -> str:
    """An address inside the first range a list names."""
    return str(ipaddress.ip_network(path.read_text().split()[0])[1])


RELAY_V4 = first_address(IPV4_LIST)
RELAY_V6 = first_address(IPV6_LIST)


class Site:
    """A web server on loopback serving the files put in ``root``; it notes each path asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits for the next one.
        serve = partial(self.server.serve_forever, poll_interval=0.01)
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def put(self, name: str, text: str) -> str:
        (self.root / name).write_text(text)
        return f"{self.url}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def apple_csv() -> str:
    """The shared lists as Apple publishes them: prefix, country, region, city, postal."""
    lines = IPV4_LIST.read_text().split() + IPV6_LIST.read_text().split()
    return "".join(f"{prefix},US,US-CA,Los Angeles,\n" for prefix in lines)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    server = Site(root)
    yield server
    server.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli_env(data: Path) -> dict[str, str]:
    return {
        "MAILBEACON_DATA": str(data),
        "MAILBEACON_SECRET": SECRET,
        "MAILBEACON_APPLE_EGRESS": "",
        "MAILBEACON_APPLE_EGRESS_REFRESH": "24",
    }


def signatures(env: dict[str, str], *args: str) -> Any:
    return runner.invoke(app, ["signatures", *args], env=env)


def test_status_says_no_list_is_kept_yet_and_how_to_get_one(cli_env: dict[str, str]) -> None:
    result = signatures(cli_env, "status")
    assert result.exit_code == 0, result.output
    assert "No copy of Apple's egress list is kept" in result.stdout
    assert "mailbeacon signatures update" in result.stdout
    as_json = signatures(cli_env, "status", "--json")
    assert json.loads(as_json.stdout) == {
        "available": False,
        "source": None,
        "fetched_at": None,
        "age_seconds": None,
        "networks": 0,
        "path": None,
        "override": False,
    }


def test_update_from_a_local_file_keeps_a_copy_that_status_reports(
    cli_env: dict[str, str], data: Path
) -> None:
    result = signatures(cli_env, "update", "--from", str(IPV4_LIST))
    assert result.exit_code == 0, result.output
    assert "Kept 3290 networks from" in result.stdout
    assert (data / "apple-egress.csv").read_bytes() == IPV4_LIST.read_bytes()
    status = signatures(cli_env, "status")
    assert status.exit_code == 0, status.output
    assert f"3290 networks from {IPV4_LIST}" in status.stdout
    assert "0 min ago" in status.stdout
    state = json.loads(signatures(cli_env, "status", "--json").stdout)
    assert state["available"] is True
    assert (state["source"], state["networks"], state["override"]) == (str(IPV4_LIST), 3290, False)
    assert 0 <= state["age_seconds"] < 60
    assert datetime.fromisoformat(state["fetched_at"]).tzinfo is not None


def test_update_over_http_keeps_apples_csv_with_where_and_when_it_came_from(
    cli_env: dict[str, str], data: Path, site: Site, apple_csv: str
) -> None:
    url = site.put("egress-ip-ranges.csv", apple_csv)
    before = datetime.now(UTC)
    result = signatures(cli_env, "update", "--from", url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"source", "fetched_at", "networks", "skipped", "bytes", "path"}
    assert (report["source"], report["networks"], report["skipped"]) == (url, 13745, 0)
    assert report["bytes"] == len(apple_csv.encode())
    assert before <= datetime.fromisoformat(report["fetched_at"]) <= datetime.now(UTC)
    assert site.requests == ["/egress-ip-ranges.csv"]
    assert (data / "apple-egress.csv").read_text() == apple_csv
    kept = json.loads((data / "apple-egress.json").read_text())
    assert (kept["source"], kept["fetched_at"], kept["networks"]) == (
        url,
        report["fetched_at"],
        13745,
    )
    egress = apple.load(data)
    assert RELAY_V4 in egress.networks
    assert RELAY_V6 in egress.networks
    assert "8.8.8.8" not in egress.networks
    assert egress.status.source == url


def test_a_garbage_download_is_refused_and_the_kept_copy_survives(
    cli_env: dict[str, str], data: Path, site: Site, apple_csv: str
) -> None:
    assert signatures(cli_env, "update", "--from", site.put("good.csv", apple_csv)).exit_code == 0
    kept = (data / "apple-egress.csv").read_bytes(), (data / "apple-egress.json").read_bytes()
    for name, text, why in [
        ("maintenance.csv", GARBAGE, 'no line is an IP network, the first is "<!DOCTYPE'),
        ("empty.csv", "\n\n", "it is empty"),
    ]:
        result = signatures(cli_env, "update", "--from", site.put(name, text))
        assert result.exit_code == 1
        assert why in result.stderr
        assert "the kept copy is unchanged" in result.stderr
        assert (
            (data / "apple-egress.csv").read_bytes(),
            (data / "apple-egress.json").read_bytes(),
        ) == kept
    state = json.loads(signatures(cli_env, "status", "--json").stdout)
    assert state["networks"] == 13745
    assert list(data.glob("*.tmp")) == []


def test_a_failed_download_says_what_went_wrong(cli_env: dict[str, str], site: Site) -> None:
    missing = signatures(cli_env, "update", "--from", f"{site.url}/nothing-here.csv")
    assert missing.exit_code == 1
    assert "HTTP 404" in missing.stderr
    unreachable = signatures(cli_env, "update", "--from", f"http://127.0.0.1:{free_port()}/x.csv")
    assert unreachable.exit_code == 1
    assert "could not download" in unreachable.stderr
    assert "refused" in unreachable.stderr.lower()


def test_only_http_urls_and_local_files_are_fetched(cli_env: dict[str, str], data: Path) -> None:
    for source in ("ftp://example.test/list.csv", f"file://{IPV4_LIST}"):
        result = signatures(cli_env, "update", "--from", source)
        assert result.exit_code == 1
        assert "only http(s) URLs and local file paths" in result.stderr
    result = signatures(cli_env, "update", "--from", str(data / "no-such-file.csv"))
    assert result.exit_code == 1
    assert "could not read" in result.stderr
    assert not (data / "apple-egress.csv").exists()


def test_a_list_over_the_size_cap_is_refused(data: Path, site: Site, apple_csv: str) -> None:
    url = site.put("huge.csv", apple_csv)
    with pytest.raises(EgressListError, match="over the 1000 bytes accepted"):
        apple.update(data, url, max_bytes=1000)
    with pytest.raises(EgressListError, match="over the 1000 bytes accepted"):
        apple.update(data, str(IPV4_LIST), max_bytes=1000)
    assert not (data / "apple-egress.csv").exists()


def test_the_apple_egress_setting_is_used_instead_of_the_kept_copy(
    cli_env: dict[str, str],
) -> None:
    assert signatures(cli_env, "update", "--from", str(IPV4_LIST)).exit_code == 0
    env = {**cli_env, "MAILBEACON_APPLE_EGRESS": str(IPV6_LIST)}
    state = json.loads(signatures(env, "status", "--json").stdout)
    assert (state["source"], state["networks"], state["override"]) == (str(IPV6_LIST), 10455, True)
    assert "never refreshed" in signatures(env, "status").stdout
    update = signatures(env, "update", "--from", str(IPV4_LIST))
    assert update.exit_code == 0
    assert f"--apple-egress is set, so {IPV6_LIST} is used instead" in update.stderr


def test_an_override_file_without_networks_is_a_clear_error(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "relay.txt"
    broken.write_text(GARBAGE)
    result = signatures({**cli_env, "MAILBEACON_APPLE_EGRESS": str(broken)}, "status")
    assert result.exit_code == 1
    assert "holds no IP networks" in result.stderr
    assert "--apple-egress" in result.stderr
    with pytest.raises(EgressListError, match="holds no IP networks"):
        AppleEgress(tmp_path / "data", override=broken)


def test_a_stale_copy_is_pointed_out_by_status(cli_env: dict[str, str], data: Path) -> None:
    assert signatures(cli_env, "update", "--from", str(IPV4_LIST)).exit_code == 0
    record = json.loads((data / "apple-egress.json").read_text())
    record["fetched_at"] = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    (data / "apple-egress.json").write_text(json.dumps(record))
    status = signatures(cli_env, "status")
    assert "1 d 6 h ago" in status.stdout
    assert "older than --apple-egress-refresh (24 h)" in status.stdout


# AppleEgress: the holder `serve` and the classifier share, and its refreshing.


def test_it_starts_empty_when_nothing_is_kept(data: Path) -> None:
    egress = AppleEgress(data)
    assert len(egress.networks) == 0
    assert RELAY_V4 not in egress
    assert egress.status.source is None


def test_a_fresh_list_is_left_alone_and_a_stale_one_is_downloaded(
    data: Path, site: Site, apple_csv: str
) -> None:
    url = site.put("egress.csv", apple_csv)
    first = apple.update(data, url)
    egress = AppleEgress(data, source=url, refresh_hours=24)
    assert RELAY_V6 in egress
    assert egress.status.fetched_at == first.fetched_at
    assert not egress.refresh_if_stale(first.fetched_at + timedelta(hours=23))
    assert len(site.requests) == 1
    in_use = egress.networks
    assert egress.refresh_if_stale(first.fetched_at + timedelta(hours=25))
    assert len(site.requests) == 2
    assert egress.networks is not in_use
    assert egress.status.fetched_at is not None
    assert egress.status.fetched_at > first.fetched_at
    assert RELAY_V6 in egress


def test_with_nothing_kept_the_first_refresh_downloads(
    data: Path, site: Site, apple_csv: str
) -> None:
    egress = AppleEgress(data, source=site.put("egress.csv", apple_csv))
    assert egress.refresh_if_stale()
    assert RELAY_V4 in egress
    assert (data / "apple-egress.csv").exists()


def test_a_failed_refresh_is_logged_and_the_networks_in_use_stay(
    data: Path, site: Site, apple_csv: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = site.put("egress.csv", apple_csv)
    first = apple.update(data, url)
    egress = AppleEgress(data, source=url)
    in_use = egress.networks
    site.put("egress.csv", GARBAGE)
    with caplog.at_level(logging.WARNING, logger="mailbeacon.classify.apple"):
        assert not egress.refresh_if_stale(first.fetched_at + timedelta(days=2))
    assert "could not refresh Apple's egress list" in caplog.text
    assert "no line is an IP network" in caplog.text
    assert "still using the 13745 networks fetched at" in caplog.text
    assert egress.networks is in_use
    assert (data / "apple-egress.csv").read_text() == apple_csv


def test_a_copy_kept_meanwhile_by_the_cli_is_picked_up_without_a_download(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    egress = AppleEgress(data, source=f"http://127.0.0.1:{free_port()}/unreachable.csv")
    apple.update(data, str(IPV4_LIST))
    with caplog.at_level(logging.WARNING, logger="mailbeacon.classify.apple"):
        assert egress.refresh_if_stale()
    assert caplog.text == ""
    assert RELAY_V4 in egress
    assert egress.status.source == str(IPV4_LIST)


def test_a_corrupt_kept_copy_is_logged_and_replaced_at_the_first_refresh(
    data: Path, site: Site, apple_csv: str, caplog: pytest.LogCaptureFixture
) -> None:
    data.mkdir()
    (data / "apple-egress.csv").write_text(GARBAGE)
    with caplog.at_level(logging.WARNING, logger="mailbeacon.classify.apple"):
        egress = AppleEgress(data, source=site.put("egress.csv", apple_csv))
    assert "holds no IP networks" in caplog.text
    assert len(egress.networks) == 0
    assert egress.refresh_if_stale()
    assert RELAY_V4 in egress


def test_refreshing_is_off_with_zero_hours_or_an_override_file(
    data: Path, site: Site, apple_csv: str
) -> None:
    url = site.put("egress.csv", apple_csv)
    never = AppleEgress(data, source=url, refresh_hours=0)
    assert not never.refresh_if_stale()
    overridden = AppleEgress(data, source=url, override=IPV4_LIST)
    assert RELAY_V4 in overridden
    assert overridden.status.override
    assert not overridden.refresh_if_stale(datetime.now(UTC) + timedelta(days=365))
    for egress in (never, overridden):
        refresher = Refresher(egress).start()
        assert not refresher.running
        refresher.stop()
    assert site.requests == []


def test_the_refresher_brings_the_list_in_in_the_background(
    data: Path, site: Site, apple_csv: str
) -> None:
    egress = AppleEgress(data, source=site.put("egress.csv", apple_csv))
    refresher = Refresher(egress, check_every=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while RELAY_V4 not in egress and time.monotonic() < deadline:
            time.sleep(0.01)
        assert RELAY_V4 in egress
    finally:
        refresher.stop(timeout=5)
    assert not refresher.running
    assert site.requests == ["/egress.csv"]  # fresh after that: checked, not downloaded again
