import os
import re
import stat
from pathlib import Path

import pytest

from mailbeacon.settings import SETTINGS, Settings, SettingsError, rotate_secret_file

README = Path(__file__).parent.parent / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert re.search(rf"`{re.escape(setting.flag)}`.*`{setting.env}`", text), setting.name


def test_the_first_start_generates_a_private_secret(tmp_path: Path) -> None:
    settings = Settings.load({"data": str(tmp_path)}, environ={})
    path = tmp_path / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.secrets == (path.read_text().strip(),)
    assert Settings.load({"data": str(tmp_path)}, environ={}).secrets == settings.secrets


def test_it_refuses_a_short_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="too short"):
        Settings.load({"data": str(tmp_path)}, environ={"MAILBEACON_SECRET": "short"})


def test_it_refuses_to_start_without_a_secret_when_it_may_not_create_one(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no signing secret"):
        Settings.load({"data": str(tmp_path)}, environ={}, create_secret=False)


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    environ = {"MAILBEACON_LISTEN": "0.0.0.0:9000", "MAILBEACON_SECRET": "e" * 40}
    settings = Settings.load({"data": str(tmp_path), "listen": "127.0.0.1:9100"}, environ=environ)
    assert (settings.host, settings.port) == ("127.0.0.1", 9100)
    assert settings.public_url == "http://127.0.0.1:9100"
    assert settings.db == str(tmp_path / "mailbeacon.db")


def test_it_refuses_a_bad_listen_address_or_proxy_cidr(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    with pytest.raises(SettingsError, match="HOST:PORT"):
        Settings.load({**base, "listen": "nowhere"}, environ={})
    with pytest.raises(SettingsError, match="not a CIDR"):
        Settings.load({**base, "trusted_proxies": "10.0.0.0/8, banana"}, environ={})


def test_it_reads_the_apple_egress_settings(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    defaults = Settings.load(base, environ={})
    assert (defaults.apple_egress, defaults.apple_egress_refresh) == (None, 24.0)
    relay = tmp_path / "relay.txt"
    relay.write_text("192.0.2.0/24\n")
    environ = {"MAILBEACON_APPLE_EGRESS": str(relay), "MAILBEACON_APPLE_EGRESS_REFRESH": "0"}
    settings = Settings.load(base, environ=environ)
    assert (settings.apple_egress, settings.apple_egress_refresh) == (relay, 0.0)


def test_it_refuses_a_bad_apple_egress_refresh_or_a_missing_egress_file(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    for hours in ("daily", "-1", "nan", "inf", ""):
        with pytest.raises(SettingsError, match="must be a number of hours"):
            Settings.load({**base, "apple_egress_refresh": hours}, environ={})
    with pytest.raises(SettingsError, match="--apple-egress: no file"):
        Settings.load({**base, "apple_egress": str(tmp_path / "missing.csv")}, environ={})


def test_rotation_puts_a_new_secret_first_and_keeps_the_old(tmp_path: Path) -> None:
    first = Settings.load({"data": str(tmp_path)}, environ={}).secrets
    rotate_secret_file(tmp_path)
    rotated = Settings.load({"data": str(tmp_path)}, environ={}).secrets
    assert len(rotated) == 2
    assert rotated[1:] == first
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600
