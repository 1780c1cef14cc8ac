"""Making each recipient's copy: render, instrument, compose; in worker processes when it pays.

A copy of a 100 KB newsletter with 300 links takes about 5 ms of CPU, nearly all of it Python
(instrumenting 4 ms, composing 1 ms): one process sends about 160 a second, database included
(`bench/run.py campaign`). Copies are independent of each other, so a long list is cut into
batches that worker processes make while the sending process commits the batches already made,
in their order; two cores made it about 320 a second.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from multiprocessing.connection import Connection

from mailbeacon.accounts import now_us
from mailbeacon.instrument.html import rewrite_html
from mailbeacon.privacy import Mode, consent_url
from mailbeacon.send.compose import compose, one_line
from mailbeacon.send.recipients import NAME_COLUMN, Recipient
from mailbeacon.send.suppressions import unsubscribe_url
from mailbeacon.send.templates import TemplateProblem, Templates
from mailbeacon.store.queries import NewMessage
from mailbeacon.tracking.register import Envelope, Tracker
from mailbeacon.tracking.tokens import Signer, new_message_id

UNSUBSCRIBE_URL = "unsubscribe_url"  # the variable templates put in their visible link
CONSENT_URL = "consent_url"  # where the recipient allows or refuses tracking (privacy)
MIN_PER_WORKER = 100  # fewer copies than this a worker, and starting workers costs more


@dataclass(frozen=True)
class Copy:
    recipient: Recipient
    message: NewMessage
    data: bytes


@dataclass(frozen=True)
class Made:
    """A batch's copies, in order, up to the first recipient whose copy could not be made."""

    copies: list[Copy]
    failed: tuple[int, str] | None = None  # that recipient's line, and why


@dataclass(frozen=True)
class CopyMaker:
    """Everything it takes to make a campaign's copies (and it pickles, for worker processes)."""

    signer: Signer
    public_url: str
    campaign: str
    sender: Address
    templates: Templates
    tracking: Mode | None = None  # what the campaign asks for (the strictest applies)

    def make(self, recipient: Recipient, mode: Mode = "full") -> Copy:
        message_id = new_message_id()
        unsubscribe = unsubscribe_url(self.signer, self.public_url, message_id)
        consent = consent_url(self.signer, self.public_url, message_id)
        if mode == "anonymous":  # an anonymous message names no one to ask
            consent = ""
        rendered = self.templates.render(
            {**recipient.variables, UNSUBSCRIBE_URL: unsubscribe, CONSENT_URL: consent}
        )
        tracker = Tracker(self.signer, self.public_url, message_id, mode)
        own = (f"{self.public_url}/u/", f"{self.public_url}/p/")

        def track(url: str) -> str | None:
            # A visit to the unsubscribe or consent page is an answer, never a click.
            return None if url.startswith(own) else tracker.track_link(url)

        html = (
            rendered.html
            if mode == "off"
            else rewrite_html(rendered.html, tracker.pixel_url, track)
        )
        name = one_line(recipient.variables.get(NAME_COLUMN, ""))
        now = now_us()
        data = compose(
            self.sender, Address(name, addr_spec=recipient.address), rendered.subject, html,
            rendered.text, unsubscribe_url=unsubscribe, date=datetime.fromtimestamp(now / 1e6, UTC),
        )  # fmt: skip
        envelope = Envelope(self.sender.addr_spec, rendered.subject, self.campaign, sent_at=now)
        # Registered even with tracking off: its unsubscribe link names it.
        return Copy(recipient, tracker.message(recipient.address, envelope), data)

    def make_all(self, recipients: Sequence[Recipient], modes: Mapping[str, Mode]) -> Made:
        copies = []
        for recipient in recipients:
            try:
                copies.append(self.make(recipient, modes.get(recipient.address, "full")))
            except TemplateProblem as exc:
                return Made(copies, (recipient.line, str(exc)))
        return Made(copies)


class Makers:
    """Makes batches of copies: in worker processes for a long list on a machine with several
    cores, else right here. Use as a context manager; ``submit`` returns a future."""

    def __init__(self, maker: CopyMaker, copies: int) -> None:
        self.maker = maker
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.workers = max(1, min(cores or 1, copies // MIN_PER_WORKER))
        self._pool: Executor | None = None
        self._alive: Connection | None = None

    def __enter__(self) -> Makers:
        if self.workers > 1:
            # forkserver: workers start clean, holding none of this process's connections.
            context = multiprocessing.get_context("forkserver")
            # A worker waits on a pipe only this process writes to: when this process ends,
            # however it ends (kill -9 too), the pipe closes and the worker goes with it.
            lifeline, self._alive = context.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self.maker, lifeline),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._alive is not None:
            self._alive.close()

    def submit(self, recipients: Sequence[Recipient], modes: Mapping[str, Mode]) -> Future[Made]:
        if self._pool is not None:
            return self._pool.submit(_make_all, list(recipients), dict(modes))
        done: Future[Made] = Future()
        done.set_result(self.maker.make_all(recipients, modes))
        return done


_maker: CopyMaker | None = None  # a worker process's own


def _start_worker(maker: CopyMaker, lifeline: Connection) -> None:
    global _maker  # noqa: PLW0603 - one per worker process, set once as it starts
    _maker = maker
    # Ctrl-C reaches the whole process group: the sending process handles it, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_sender, args=(lifeline,), daemon=True).start()


def _exit_with_sender(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: this returns when the sender is gone
    os._exit(1)


def _make_all(recipients: list[Recipient], modes: dict[str, Mode]) -> Made:
    if _maker is None:
        raise RuntimeError("the worker was not started")
    return _maker.make_all(recipients, modes)
