"""What a running server holds: settings, the database, its writer, the token signer, the
classifier with Apple's relay list and the settler, and the deliverer of the outbound queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

import anyio.to_thread

from mailbeacon.classify import signatures
from mailbeacon.classify.apple import AppleEgress
from mailbeacon.classify.pipeline import Classifier
from mailbeacon.classify.settle import Settler
from mailbeacon.notify.alerts import Mailer
from mailbeacon.notify.dispatcher import Dispatcher
from mailbeacon.notify.notifier import Notifier
from mailbeacon.notify.stream import Hub
from mailbeacon.relay.deliverer import Deliverer
from mailbeacon.relay.upstream import helo_name
from mailbeacon.retention import Retention
from mailbeacon.sessions import KeyGuesses
from mailbeacon.settings import Settings
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer
from mailbeacon.tracking.tokens import Signer
from mailbeacon.web.charts import Keeper
from mailbeacon.web.ops import Metrics

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    db: Database
    writer: Writer
    signer: Signer
    apple: AppleEgress
    classifier: Classifier
    settler: Settler
    deliverer: Deliverer  # poke() it after queueing copies (relay.queue.enqueue)
    notifier: Notifier
    hub: Hub  # wakes the live streams
    dispatcher: Dispatcher  # delivers webhooks; poke() it after publishing events
    keeper: Keeper  # computes large campaigns' figures in the background
    metrics: Metrics
    retention: Retention  # prunes old rows, and keeps PostgreSQL's months of hits ahead
    key_guesses: KeyGuesses  # addresses refused for sending unknown API keys (sessions)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        db = Database(settings.db)
        writer = Writer(
            db, hold=int(settings.settle_seconds * 1_000_000), spool=settings.data / "spool.db"
        )
        apple = AppleEgress.from_settings(settings)
        classifier = Classifier(apple, signatures.load(settings.signatures))
        deliverer = Deliverer(
            db, writer, settings.upstream, dkim=settings.dkim, helo=helo_name(settings.public_url)
        )
        hub = Hub()
        signer = Signer(settings.secrets)
        mailer = Mailer(settings.alerts_from, settings.public_url, signer)
        dispatcher = Dispatcher(writer, mailer, allow_private=settings.allow_private_webhooks)

        def published() -> None:
            hub.wake()
            dispatcher.poke()
            deliverer.poke()  # alerts were queued, perhaps

        notifier = Notifier(writer, mailer=mailer, published=published)
        settler = Settler(db, writer)
        writer.stored = settler.settled = notifier.poke
        writer.drained = settler.poke  # a spooled click settles once it is stored
        metrics = Metrics(db, writer)
        writer.observe = metrics.observe
        dispatcher.attempted = metrics.attempted
        return cls(
            settings, db, writer, signer, apple, classifier, settler, deliverer,
            notifier, hub, dispatcher, Keeper(db, writer), metrics,
            Retention(db, writer, settings), KeyGuesses(),
        )  # fmt: skip

    async def read(self, fn: Callable[Concatenate[Conn, P], T], *a: P.args, **kw: P.kwargs) -> T:
        """Run a query on a reader thread, off the event loop."""
        return await anyio.to_thread.run_sync(lambda: self.db.read(fn, *a, **kw))
