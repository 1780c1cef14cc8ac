"""Apple's iCloud Private Relay egress list: fetched, kept in the data directory, shared in memory.

Apple Mail Privacy Protection fetches images through Private Relay, whose egress addresses belong
to Cloudflare, Akamai and Fastly rather than to Apple's 17.0.0.0/8; Apple's published list is the
only way to recognise such a fetch by its address (RESEARCH.md §1). The list changes, so the
product keeps a copy and refreshes it:

- :func:`update` downloads it (or reads a local file), refuses anything that holds no network,
  and replaces the kept copy ``DATA/apple-egress.csv`` atomically, with ``DATA/apple-egress.json``
  saying where it came from and when;
- :func:`load` reads the kept copy, or the file the ``apple_egress`` setting names instead;
- :class:`AppleEgress` holds the networks in use for the server and the classifier, and a
  :class:`Refresher` thread keeps them fresh in ``serve``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailbeacon import __version__
from mailbeacon.classify.networks import Networks
from mailbeacon.settings import Settings

APPLE_EGRESS_URL = "https://mask-api.icloud.com/egress-ip-ranges.csv"
KEPT_LIST = "apple-egress.csv"
KEPT_STATUS = "apple-egress.json"
TIMEOUT = 60.0  # seconds without a byte before a download is given up
# Apple's CSV has 200k+ lines of about 40 bytes; the cap only stops a runaway response.
MAX_BYTES = 64 * 1024 * 1024
DEFAULT_REFRESH_HOURS = 24.0
# How often the refresher looks: a failed download is retried, and a copy kept meanwhile by
# `mailbeacon signatures update` is picked up, within the hour.
CHECK_EVERY = 3600.0  # seconds

log = logging.getLogger(__name__)


class EgressListError(Exception):
    """The list could not be fetched, read or trusted; the message says which and why."""


@dataclass(frozen=True)
class EgressStatus:
    """Where the networks in use came from and how fresh they are."""

    source: str | None
    """The URL or file it was fetched from (the override file itself); None: no list yet."""
    fetched_at: datetime | None
    """When it was fetched (an override file: its modification time); None: no list yet."""
    networks: int
    path: Path | None
    """The file the networks were read from: the kept copy or the override."""
    override: bool = False
    """True when the ``apple_egress`` setting names the file, which is then never refreshed."""

    def age(self, now: datetime | None = None) -> timedelta | None:
        if self.fetched_at is None:
            return None
        return (now or datetime.now(UTC)) - self.fetched_at

    def as_json(self, now: datetime | None = None) -> dict[str, Any]:
        age = self.age(now)
        return {
            "available": self.path is not None,
            "source": self.source,
            "fetched_at": self.fetched_at.isoformat() if self.fetched_at else None,
            "age_seconds": int(age.total_seconds()) if age is not None else None,
            "networks": self.networks,
            "path": str(self.path) if self.path else None,
            "override": self.override,
        }


NOTHING_KEPT = EgressStatus(source=None, fetched_at=None, networks=0, path=None)


@dataclass(frozen=True)
class EgressList:
    networks: Networks
    status: EgressStatus


@dataclass(frozen=True)
class UpdateReport:
    """What :func:`update` kept."""

    source: str
    fetched_at: datetime
    networks: int
    skipped: int
    """Lines that were not a network (Apple's own file has none)."""
    size: int
    """Bytes kept."""
    path: Path

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fetched_at": self.fetched_at.isoformat(),
            "networks": self.networks,
            "skipped": self.skipped,
            "bytes": self.size,
            "path": str(self.path),
        }


def update(
    data_dir: Path,
    source: str | None = None,
    *,
    timeout: float = TIMEOUT,
    max_bytes: int = MAX_BYTES,
) -> UpdateReport:
    """Fetch the list and make it the kept copy in ``data_dir``.

    ``source`` is an http(s) URL (default: Apple's) or a local file path. The text must hold at
    least one network, otherwise EgressListError is raised and the kept copy stays as it was; so
    does it for a failed download, a response over ``max_bytes``, or any other scheme.
    """
    source = source or APPLE_EGRESS_URL
    if "://" in source:
        body = _download(source, timeout, max_bytes)
    else:
        path = Path(source).expanduser().resolve()
        body = _read(path, max_bytes)
        source = str(path)
    parsed = Networks.parse_lines(body.decode("utf-8", "replace").splitlines())
    if not parsed.networks:
        raise EgressListError(
            f"refusing the list from {source}: {_no_networks(body)}; the kept copy is unchanged"
        )
    fetched_at = datetime.now(UTC)
    kept = data_dir / KEPT_LIST
    record = {
        "source": source,
        "fetched_at": fetched_at.isoformat(),
        "networks": len(parsed.networks),
    }
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(kept, body)
        # Written second: a reader that meets the new list with the old time only refreshes early.
        _write_atomically(data_dir / KEPT_STATUS, (json.dumps(record, indent=2) + "\n").encode())
    except OSError as exc:
        raise EgressListError(f"could not keep the list in {data_dir}: {exc}") from exc
    return UpdateReport(source, fetched_at, len(parsed.networks), parsed.skipped, len(body), kept)


def load(data_dir: Path, override: Path | str | None = None) -> EgressList:
    """The networks to use: from the ``override`` file if given, else the copy kept in
    ``data_dir``; an empty list when nothing is kept yet, so that the product starts offline.

    Raises EgressListError when the file cannot be read or holds no network.
    """
    if override:
        path = Path(override).expanduser()
        networks = _read_networks(path, "check the --apple-egress setting")
        status = EgressStatus(str(path), _mtime(path), len(networks), path, override=True)
        return EgressList(networks, status)
    # The time first: if `update` replaces the list in between, the list is newer than the time
    # says, which only brings the next refresh forward.
    stamp = _kept_stamp(data_dir)
    if stamp is None:
        return EgressList(Networks.empty(), NOTHING_KEPT)
    path = data_dir / KEPT_LIST
    networks = _read_networks(path, "run `mailbeacon signatures update` to fetch it again")
    source, fetched_at = stamp
    return EgressList(networks, EgressStatus(source, fetched_at, len(networks), path))


class AppleEgress:
    """The egress list in use, shared by the server and the classifier.

    ``ip in egress`` (or ``ip in egress.networks``) is safe from any thread without a lock: a
    reload builds new :class:`Networks` and swaps them in, with their status, in one assignment.
    Build it with :meth:`from_settings`; in ``serve``, start a :class:`Refresher` beside it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        override: Path | None = None,
        refresh_hours: float = DEFAULT_REFRESH_HOURS,
        source: str = APPLE_EGRESS_URL,
    ) -> None:
        """Load what is there. A broken override file raises EgressListError (a setting is
        wrong); a broken kept copy is logged and replaced at the next refresh."""
        self.data_dir = data_dir
        self.override = override
        self.refresh_every = timedelta(hours=refresh_hours)
        self.source = source
        self._refreshing = threading.Lock()
        try:
            self._current = load(data_dir, override)
        except EgressListError as exc:
            if override is not None:
                raise
            log.warning("%s; starting without Apple's egress list", exc)
            self._current = EgressList(Networks.empty(), NOTHING_KEPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppleEgress:
        return cls(
            settings.data,
            override=settings.apple_egress,
            refresh_hours=settings.apple_egress_refresh,
        )

    @property
    def networks(self) -> Networks:
        return self._current.networks

    @property
    def status(self) -> EgressStatus:
        return self._current.status

    def __contains__(self, ip: object) -> bool:
        return ip in self._current.networks

    def reload(self) -> EgressStatus:
        """Read the kept copy (or the override) again and use it. On EgressListError the
        networks in use stay."""
        self._current = load(self.data_dir, self.override)
        return self._current.status

    def refresh_if_stale(self, now: datetime | None = None) -> bool:
        """Bring the list up to date when it is older than ``refresh_hours``; True if it changed.

        A copy kept meanwhile by another process (``mailbeacon signatures update``) is picked up
        first; only if that is stale too is the list downloaded. Never raises: a failure is
        logged and the networks in use stay. Does nothing with an override file or a refresh
        interval of 0.
        """
        if self.override is not None or not self.refresh_every:
            return False
        now = now or datetime.now(UTC)
        with self._refreshing:
            changed = self._pick_up_newer_copy()
            fetched_at = self.status.fetched_at
            if fetched_at is not None and now - fetched_at < self.refresh_every:
                return changed
            try:
                report = update(self.data_dir, self.source)
                self.reload()
            except EgressListError as exc:
                log.warning(
                    "could not refresh Apple's egress list: %s; still using %s",
                    exc,
                    _describe(self.status),
                )
                return changed
            log.info(
                "refreshed Apple's egress list: %d networks from %s", report.networks, report.source
            )
            return True

    def _pick_up_newer_copy(self) -> bool:
        stamp = _kept_stamp(self.data_dir)
        in_use = self.status.fetched_at
        if stamp is None or (in_use is not None and stamp[1] <= in_use):
            return False
        try:
            self.reload()
        except EgressListError as exc:
            log.warning("%s", exc)
            return False
        return True


class Refresher:
    """Calls :meth:`AppleEgress.refresh_if_stale` at start and every ``check_every`` seconds.

    A daemon thread rather than an asyncio task: a download blocks for up to a minute, and work
    handed to ``asyncio.to_thread`` is waited for when the event loop shuts down, which would
    hold up a SIGTERM; a daemon thread holds up nothing.
    """

    def __init__(self, egress: AppleEgress, check_every: float | None = None) -> None:
        self.egress = egress
        self.check_every = check_every or min(CHECK_EVERY, egress.refresh_every.total_seconds())
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apple-egress", daemon=True)

    def start(self) -> Refresher:
        """Start refreshing, unless the list is never refreshed (override file, or 0 hours)."""
        if self.egress.override is None and self.egress.refresh_every:
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 0.0) -> None:
        """Stop refreshing, waiting up to ``timeout`` seconds for the thread to end.

        The default does not wait, so that a shutdown is never held up by a download under way;
        that is safe because the kept copy is only ever replaced whole (see :func:`update`).
        """
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.egress.refresh_if_stale()
            except Exception:  # a bug must not end the refreshing for the life of the server
                log.exception("refreshing Apple's egress list failed")
            self._stopping.wait(self.check_every)


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise EgressListError(f"{url}: only http(s) URLs and local file paths can be fetched")
    # Only HTTP handlers: a redirect to ftp:// or file:// is then an "unknown url type" error.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    agent = {"User-Agent": f"mailbeacon/{__version__}"}
    request = urllib.request.Request(url, headers=agent)  # noqa: S310 (scheme checked above)
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise EgressListError(
                    f"{url} is {length} bytes, over the {max_bytes} bytes accepted"
                )
            body: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise EgressListError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise EgressListError(f"could not download {url}: {exc.reason}") from exc
    except (OSError, HTTPException) as exc:
        raise EgressListError(f"could not download {url}: {exc or type(exc).__name__}") from exc
    if len(body) > max_bytes:
        raise EgressListError(f"{url} sent over the {max_bytes} bytes accepted")
    return body


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as f:
            body = f.read(max_bytes + 1)
    except OSError as exc:
        raise EgressListError(f"could not read {path}: {exc.strerror or exc}") from exc
    if len(body) > max_bytes:
        raise EgressListError(f"{path} is over the {max_bytes} bytes accepted")
    return body


def _read_networks(path: Path, remedy: str) -> Networks:
    body = _read(path, MAX_BYTES)
    networks = Networks.parse_lines(body.decode("utf-8", "replace").splitlines()).networks
    if not networks:
        raise EgressListError(f"{path} holds no IP networks ({_no_networks(body)}); {remedy}")
    return networks


def _no_networks(body: bytes) -> str:
    """Why a text holds no network, with its first line as evidence."""
    lines = (line.strip() for line in body.decode("utf-8", "replace").splitlines())
    first = next((line for line in lines if line), None)
    if first is None:
        return "it is empty"
    return f"no line is an IP network, the first is {first[:80]!r}"


def _kept_stamp(data_dir: Path) -> tuple[str, datetime] | None:
    """Where the kept copy came from and when, without reading the list; None if none is kept."""
    path = data_dir / KEPT_LIST
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    try:
        record = json.loads((data_dir / KEPT_STATUS).read_text())
        fetched_at = datetime.fromisoformat(record["fetched_at"])
        source = str(record["source"])
    except (OSError, ValueError, KeyError, TypeError):
        # A copy put there by hand, or a status file lost: the list's own time will do.
        return str(path), datetime.fromtimestamp(mtime, UTC)
    if fetched_at.tzinfo is None:
        fetched_at = fetched_at.replace(tzinfo=UTC)
    return source, fetched_at


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError as exc:
        raise EgressListError(f"could not read {path}: {exc.strerror or exc}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    # A unique temporary name: two updates at once must not write into the same file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _describe(status: EgressStatus) -> str:
    if status.fetched_at is None:
        return "no list"
    return f"the {status.networks} networks fetched at {status.fetched_at.isoformat()}"
