"""Every setting, declared once: its flag, its ``MAILBEACON_*`` variable, its default and its help.

Flags win over the environment, the environment over the defaults. The README's configuration
table is checked against ``SETTINGS`` by a test, so a setting cannot go undocumented.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailbeacon.logs import FORMATS
from mailbeacon.privacy import Minimising
from mailbeacon.relay.upstream import Dkim, Upstream

MIN_SECRET_LENGTH = 32


class SettingsError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    switch: bool = False  # a flag without a value; the variable takes 1 or 0

    @property
    def env(self) -> str:
        return "MAILBEACON_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("data", "./mailbeacon-data", "Directory for the SQLite database and the secret."),
    Setting("db", "", "SQLite file path or postgresql:// URL (default: DATA/mailbeacon.db)."),
    Setting("listen", "127.0.0.1:8025", "Address and port the HTTP server listens on."),
    Setting(
        "public_url",
        "",
        "Base URL written into tracking links (default: http://LISTEN).",
    ),
    Setting(
        "trusted_proxies",
        "",
        "Comma-separated CIDRs whose X-Forwarded-For header is believed.",
    ),
    Setting(
        "ip_truncation",
        "0",
        "Keep only the network of a hit's address: 24 keeps an IPv4 address's /24 and an IPv6 "
        "address's /48 (classification sees the whole address first); 0 keeps it whole.",
    ),
    Setting(
        "drop_user_agents",
        "",
        "Keep no hit's User-Agent (classification reads it first; the client it names is kept).",
        switch=True,
    ),
    Setting(
        "log_format",
        "text",
        "How `serve` logs to standard error: `text` (a line a record) or `json` (an object a "
        "line: time, level, logger, message).",
    ),
    Setting(
        "smtp_listen",
        "",
        "HOST:PORT of the SMTP submission relay (STARTTLS, AUTH); none: no relay.",
    ),
    Setting(
        "smtp_cert",
        "",
        "PEM certificate (chain) of the SMTP relay; default: self-signed, DATA/smtp-cert.pem.",
    ),
    Setting("smtp_key", "", "PEM private key of --smtp-cert; default: DATA/smtp-key.pem."),
    Setting(
        "smtp_max_size",
        "25M",
        "Largest message the SMTP relay accepts, in bytes or with K or M (×1024).",
    ),
    Setting(
        "upstream",
        "",
        "The SMTP server queued mail is sent through: smtp://user:password@host:port (STARTTLS "
        "when offered; port 587) or smtps://… (TLS; 465). Empty: mail stays queued.",
    ),
    Setting("dkim_key", "", "PEM RSA private key to DKIM-sign sent mail with; none: unsigned."),
    Setting("dkim_selector", "", "DKIM selector of --dkim-key (DNS: SELECTOR._domainkey.DOMAIN)."),
    Setting("dkim_domain", "", "DKIM signing domain (d=) of --dkim-key."),
    Setting(
        "secret",
        "",
        "Signing secret (at least 32 characters); default: generated into DATA/secret.",
    ),
    Setting(
        "previous_secrets",
        "",
        "Comma-separated earlier secrets whose tokens still verify after a rotation.",
    ),
    Setting(
        "apple_egress",
        "",
        "Local file with Apple's Private Relay egress ranges (Apple's CSV or one CIDR a line) "
        "to use instead of the downloaded copy; for offline use.",
    ),
    Setting(
        "apple_egress_refresh",
        "24",
        "Hours between refreshes of Apple's egress list in `serve`; 0 turns refreshing off.",
    ),
    Setting(
        "signatures",
        "",
        "A TOML file of your own signatures (the tables of the built-in signatures.toml), "
        "added to the built-in ones: e.g. your data centres' or scanners' networks.",
    ),
    Setting(
        "settle_seconds",
        "60",
        "A hit within this many seconds of sending notifies only this long after it arrived, "
        "once a security gateway's link sweep could have unmasked it; later hits notify at once.",
    ),
    Setting(
        "alerts_from",
        "",
        "The From address of alert emails to senders; default: mailbeacon@ the host of "
        "--public-url.",
    ),
    Setting(
        "allow_private_webhooks",
        "",
        "Send webhooks to loopback, private and link-local addresses too (a server on a "
        "private network); by default they are refused.",
        switch=True,
    ),
    Setting(
        "retention_days",
        "0",
        "Days hits are kept, then removed by `serve` (hourly) and `mailbeacon prune`; 0 keeps "
        "them forever. Rates and charts count only the hits kept.",
    ),
    Setting(
        "ops_retention_days",
        "30",
        "Days the delivery log, published events and sent alert emails are kept; 0 keeps them "
        "forever.",
    ),
)


def _parse_listen(value: str, flag: str = "--listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{flag} must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parse_networks(
    value: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise SettingsError(f"--trusted-proxies: {part!r} is not a CIDR ({exc})") from exc
    return tuple(networks)


def _parse_number(value: str, flag: str, unit: str) -> float:
    problem = SettingsError(f"{flag} must be a number of {unit}, got {value!r}")
    try:
        hours = float(value)
    except ValueError as exc:
        raise problem from exc
    if not 0 <= hours < math.inf:  # nan fails every comparison, so it is refused too
        raise problem
    return hours


def _parse_size(value: str, flag: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KM]?)B?\s*", value, re.IGNORECASE)
    if match is None or int(match.group(1)) == 0:
        raise SettingsError(f"{flag} must be a size such as 25M, 512K or 1000000, got {value!r}")
    return int(match.group(1)) * {"": 1, "K": 1024, "M": 1024 * 1024}[match.group(2).upper()]


def _parse_upstream(value: str) -> Upstream | None:
    if not value.strip():
        return None
    try:
        return Upstream.parse(value)
    except ValueError as exc:
        raise SettingsError(f"--upstream: {exc}") from None  # the URL may hold a password


_DNS_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def _parse_dkim(key: str, selector: str, domain: str) -> Dkim | None:
    given = {"--dkim-key": key, "--dkim-selector": selector, "--dkim-domain": domain}
    missing = [flag for flag, value in given.items() if not value]
    if len(missing) == len(given):
        return None
    if missing:
        raise SettingsError(
            f"--dkim-key, --dkim-selector and --dkim-domain go together: {', '.join(missing)} "
            "missing (or leave all three empty to send unsigned)"
        )
    for flag in ("--dkim-selector", "--dkim-domain"):
        if not _DNS_NAME.fullmatch(given[flag]):
            raise SettingsError(f"{flag} must be a DNS name, got {given[flag]!r}")
    try:
        return Dkim.load(Path(key).expanduser(), selector, domain.rstrip("."))
    except ValueError as exc:
        raise SettingsError(f"--dkim-key: {exc}") from None


def _parse_alerts_from(value: str, public_url: str) -> str:
    if not value.strip():
        host = urlsplit(public_url).hostname or "localhost"
        return f"mailbeacon <mailbeacon@{'localhost' if _is_address(host) else host}>"
    _, address = parseaddr(value)
    if "@" not in address or any(c in value for c in "\r\n"):
        raise SettingsError(f"--alerts-from must be an email address, got {value!r}")
    return value.strip()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_switch(value: str, flag: str) -> bool:
    """On for a flag given (``True``) or a variable of 1, true, yes or on; off when empty."""
    on, off = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
    if value.strip().lower() not in on + off:
        raise SettingsError(f"{flag} is on or off (1 or 0), got {value!r}")
    return value.strip().lower() in on


def _parse_prefix(value: str) -> int:
    if not value.strip().isdigit() or not 0 <= int(value) <= 32:
        raise SettingsError(f"--ip-truncation is a prefix length from 0 to 32, got {value!r}")
    return int(value)


def _parse_file(value: str, flag: str, remedy: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise SettingsError(f"{flag}: no file {str(path)!r}; {remedy}")
    return path


@dataclass(frozen=True)
class Settings:
    data: Path
    db: str
    host: str
    port: int
    log_format: str  # one of logs.FORMATS
    minimising: Minimising  # what is kept of who fetched (--ip-truncation, --drop-user-agents)
    public_url: str
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    smtp_listen: tuple[str, int] | None  # None: no relay
    smtp_cert: Path | None  # with smtp_key; None: the self-signed pair in DATA
    smtp_key: Path | None
    smtp_max_size: int  # bytes
    upstream: Upstream | None  # None: mail stays queued
    dkim: Dkim | None  # None: sent unsigned
    apple_egress: Path | None
    apple_egress_refresh: float  # hours
    signatures: Path | None
    settle_seconds: float
    alerts_from: str
    allow_private_webhooks: bool
    retention_days: float
    ops_retention_days: float
    secrets: tuple[str, ...] = field(repr=False)

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        create_secret: bool = True,
    ) -> Settings:
        """Resolve every setting from flags, then ``environ``, then defaults; fail fast."""
        flags = flags or {}
        environ = os.environ if environ is None else environ
        raw: dict[str, str] = {}
        for setting in SETTINGS:
            value = flags.get(setting.name)
            if value is None:
                value = environ.get(setting.env, setting.default)
            raw[setting.name] = str(value)

        data = Path(raw["data"]).expanduser()
        db = raw["db"] or str(data / "mailbeacon.db")
        host, port = _parse_listen(raw["listen"])
        if raw["log_format"] not in FORMATS:
            raise SettingsError(f"--log-format is text or json, got {raw['log_format']!r}")
        public_url = (raw["public_url"] or f"http://{raw['listen']}").rstrip("/")
        if urlsplit(public_url).scheme not in ("http", "https"):
            raise SettingsError(f"--public-url must be an http(s) URL, got {public_url!r}")
        keyring = (
            (raw["secret"],) if raw["secret"] else read_secret_file(data, create=create_secret)
        )
        previous = tuple(filter(None, (s.strip() for s in raw["previous_secrets"].split(","))))
        for secret in (*keyring, *previous):
            if len(secret) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    f"the signing secret is too short ({len(secret)} characters); "
                    f"use at least {MIN_SECRET_LENGTH}, e.g. `python -c "
                    f"'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        if bool(raw["smtp_cert"]) != bool(raw["smtp_key"]):
            raise SettingsError("--smtp-cert and --smtp-key go together: set both, or neither")
        self_signed = "leave --smtp-cert and --smtp-key empty for a self-signed certificate"
        return cls(
            data=data,
            db=db,
            host=host,
            port=port,
            log_format=raw["log_format"],
            minimising=Minimising(
                ip_prefix=_parse_prefix(raw["ip_truncation"]),
                keep_user_agents=not _parse_switch(raw["drop_user_agents"], "--drop-user-agents"),
            ),
            public_url=public_url,
            trusted_proxies=_parse_networks(raw["trusted_proxies"]),
            smtp_listen=(
                _parse_listen(raw["smtp_listen"], "--smtp-listen") if raw["smtp_listen"] else None
            ),
            smtp_cert=_parse_file(raw["smtp_cert"], "--smtp-cert", self_signed),
            smtp_key=_parse_file(raw["smtp_key"], "--smtp-key", self_signed),
            smtp_max_size=_parse_size(raw["smtp_max_size"], "--smtp-max-size"),
            upstream=_parse_upstream(raw["upstream"]),
            dkim=_parse_dkim(raw["dkim_key"], raw["dkim_selector"], raw["dkim_domain"]),
            apple_egress=_parse_file(
                raw["apple_egress"], "--apple-egress", "leave it empty to use the downloaded copy"
            ),
            signatures=_parse_file(
                raw["signatures"], "--signatures", "leave it empty for the built-in ones only"
            ),
            apple_egress_refresh=_parse_number(
                raw["apple_egress_refresh"], "--apple-egress-refresh", "hours (0: never)"
            ),
            settle_seconds=_parse_number(raw["settle_seconds"], "--settle-seconds", "seconds"),
            alerts_from=_parse_alerts_from(raw["alerts_from"], public_url),
            allow_private_webhooks=_parse_switch(
                raw["allow_private_webhooks"], "--allow-private-webhooks"
            ),
            retention_days=_parse_number(raw["retention_days"], "--retention-days", "days"),
            ops_retention_days=_parse_number(
                raw["ops_retention_days"], "--ops-retention-days", "days"
            ),
            secrets=(*keyring, *previous),
        )


def read_secret_file(data: Path, *, create: bool) -> tuple[str, ...]:
    """The keyring in DATA/secret, newest first, one secret a line.

    On a first start it is generated (mode 0600) when ``create`` allows it.
    """
    path = data / "secret"
    if not path.exists():
        if not create:
            raise SettingsError(
                f"no signing secret: set MAILBEACON_SECRET or run `mailbeacon serve` once "
                f"to generate {path}"
            )
        rotate_secret_file(data)
    keyring = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not keyring:
        raise SettingsError(f"{path} is empty; delete it to generate a new secret")
    return keyring


def rotate_secret_file(data: Path) -> None:
    """Put a new secret first in DATA/secret; older ones keep verifying mail already sent."""
    path = data / "secret"
    data.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48) + "\n" + old)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
