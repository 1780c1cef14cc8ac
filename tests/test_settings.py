import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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
        with pytest.raises(SettingsError, match="--apple-egress-refresh must be a number of hours"):
            Settings.load({**base, "apple_egress_refresh": hours}, environ={})
        with pytest.raises(SettingsError, match="--settle-seconds must be a number of seconds"):
            Settings.load({**base, "settle_seconds": hours}, environ={})
    with pytest.raises(SettingsError, match="--apple-egress: no file"):
        Settings.load({**base, "apple_egress": str(tmp_path / "missing.csv")}, environ={})


def test_alerts_come_from_the_tracking_domain_unless_told(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    named = Settings.load({**base, "public_url": "https://t.example.com"}, environ={})
    assert named.alerts_from == "mailbeacon <mailbeacon@t.example.com>"
    assert Settings.load(base, environ={}).alerts_from == "mailbeacon <mailbeacon@localhost>"
    chosen = Settings.load({**base, "alerts_from": "Alerts <a@example.com>"}, environ={})
    assert chosen.alerts_from == "Alerts <a@example.com>"
    for bad in ("nobody", "a@example.com\r\nBcc: x@example.com"):
        with pytest.raises(SettingsError, match="--alerts-from must be an email address"):
            Settings.load({**base, "alerts_from": bad}, environ={})


def test_rotation_puts_a_new_secret_first_and_keeps_the_old(tmp_path: Path) -> None:
    first = Settings.load({"data": str(tmp_path)}, environ={}).secrets
    rotate_secret_file(tmp_path)
    rotated = Settings.load({"data": str(tmp_path)}, environ={}).secrets
    assert len(rotated) == 2
    assert rotated[1:] == first
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600


def test_it_reads_the_upstream_url_and_never_shows_its_password(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    assert Settings.load(base, environ={}).upstream is None
    environ = {"MAILBEACON_UPSTREAM": "smtp://relay%40example.test:p%25ss%3Aw@mail.example.test"}
    upstream = Settings.load(base, environ=environ).upstream
    assert upstream is not None
    assert (upstream.host, upstream.port) == ("mail.example.test", 587)
    assert (upstream.username, upstream.password) == ("relay@example.test", "p%ss:w")
    assert str(upstream) == "smtp://relay@example.test@mail.example.test:587"
    assert "p%ss" not in repr(Settings.load(base, environ=environ))
    smtps = Settings.load({**base, "upstream": "smtps://[::1]"}, environ={}).upstream
    assert smtps is not None
    assert (smtps.host, smtps.port, str(smtps)) == ("::1", 465, "smtps://[::1]:465")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mail.example.test:587", "expected smtp://"),
        ("http://mail.example.test", "expected smtp://"),
        ("smtp://", "no host"),
        ("smtp://mail.example.test:99999", "bad port"),
        ("smtp://mail.example.test:0", "bad port"),
        ("smtp://mail.example.test/inbox", "unexpected path"),
        ("smtp://relay@mail.example.test", "both a user name and a password"),
    ],
)
def test_it_refuses_a_bad_upstream_url(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"--upstream: .*{re.escape(problem)}"):
        Settings.load({"data": str(tmp_path), "secret": "e" * 40, "upstream": url}, environ={})


def test_a_bad_upstream_url_does_not_leak_its_password(tmp_path: Path) -> None:
    url = "smtp://relay:hunter2@mail.example.test:notaport"
    with pytest.raises(SettingsError) as refused:
        Settings.load({"data": str(tmp_path), "secret": "e" * 40, "upstream": url}, environ={})
    assert "hunter2" not in str(refused.value)
    assert refused.value.__cause__ is None


def _pem(tmp_path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def test_it_loads_a_dkim_key_with_its_selector_and_domain(tmp_path: Path) -> None:
    key = _pem(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    flags = {"data": str(tmp_path), "secret": "e" * 40, "dkim_key": key}
    dkim = Settings.load(
        {**flags, "dkim_selector": "mb2026", "dkim_domain": "example.test."}, environ={}
    ).dkim
    assert dkim is not None
    assert (dkim.selector, dkim.domain) == ("mb2026", "example.test")
    assert "PRIVATE KEY" not in repr(dkim)
    assert Settings.load({"data": str(tmp_path), "secret": "e" * 40}, environ={}).dkim is None


def test_it_refuses_an_incomplete_or_unusable_dkim_setup(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    names = {"dkim_selector": "mb2026", "dkim_domain": "example.test"}
    good = _pem(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(SettingsError, match="go together: --dkim-domain missing"):
        Settings.load({**base, "dkim_key": good, "dkim_selector": "mb2026"}, environ={})
    with pytest.raises(SettingsError, match="go together: --dkim-key missing"):
        Settings.load({**base, **names}, environ={})
    with pytest.raises(SettingsError, match="--dkim-selector must be a DNS name"):
        Settings.load({**base, **names, "dkim_key": good, "dkim_selector": "a b"}, environ={})
    with pytest.raises(SettingsError, match="--dkim-key: cannot read"):
        Settings.load({**base, **names, "dkim_key": str(tmp_path / "none.pem")}, environ={})
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(SettingsError, match="not an unencrypted PEM private key"):
        Settings.load({**base, **names, "dkim_key": str(tmp_path / "junk.pem")}, environ={})
    ec_key = _pem(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SettingsError, match="not an RSA key"):
        Settings.load({**base, **names, "dkim_key": ec_key}, environ={})
    small = tmp_path / "small.pem"  # too weak for cryptography to make one: OpenSSL does
    weak = subprocess.run(["openssl", "genrsa", "512"], capture_output=True, check=True)
    small.write_bytes(weak.stdout)
    with pytest.raises(SettingsError, match="512-bit key"):
        Settings.load({**base, **names, "dkim_key": str(small)}, environ={})


def test_it_reads_the_smtp_relay_settings(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    defaults = Settings.load(base, environ={})
    assert (defaults.smtp_listen, defaults.smtp_cert, defaults.smtp_key) == (None, None, None)
    assert defaults.smtp_max_size == 25 * 1024 * 1024
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-")
    key.write_text("-")
    environ = {
        "MAILBEACON_SMTP_LISTEN": "[::1]:2525",
        "MAILBEACON_SMTP_CERT": str(cert),
        "MAILBEACON_SMTP_KEY": str(key),
        "MAILBEACON_SMTP_MAX_SIZE": "512K",
    }
    settings = Settings.load(base, environ=environ)
    assert settings.smtp_listen == ("::1", 2525)
    assert (settings.smtp_cert, settings.smtp_key, settings.smtp_max_size) == (cert, key, 524288)
    assert Settings.load({**base, "smtp_max_size": "1000000"}, environ={}).smtp_max_size == 10**6


def test_it_refuses_bad_smtp_relay_settings(tmp_path: Path) -> None:
    base = {"data": str(tmp_path), "secret": "e" * 40}
    with pytest.raises(SettingsError, match="--smtp-listen must be HOST:PORT"):
        Settings.load({**base, "smtp_listen": "2525"}, environ={})
    with pytest.raises(SettingsError, match="--smtp-max-size must be a size"):
        Settings.load({**base, "smtp_max_size": "lots"}, environ={})
    with pytest.raises(SettingsError, match="--smtp-max-size must be a size"):
        Settings.load({**base, "smtp_max_size": "0"}, environ={})
    key = tmp_path / "key.pem"
    key.write_text("-")
    with pytest.raises(SettingsError, match="go together"):
        Settings.load({**base, "smtp_key": str(key)}, environ={})
    with pytest.raises(SettingsError, match="--smtp-cert: no file"):
        Settings.load({**base, "smtp_key": str(key), "smtp_cert": "/nowhere.pem"}, environ={})
