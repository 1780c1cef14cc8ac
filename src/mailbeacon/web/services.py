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
from mailbeacon.relay.deliverer import Deliverer
from mailbeacon.relay.upstream import helo_name
from mailbeacon.settings import Settings
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer
from mailbeacon.tracking.tokens import Signer

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

    @classmethod
    def open(cls, settings: Settings) -> Services:
        db = Database(settings.db)
        writer = Writer(db)
        apple = AppleEgress.from_settings(settings)
        classifier = Classifier(apple, signatures.load(settings.signatures))
        return cls(
            settings, db, writer, Signer(settings.secrets), apple, classifier,
            Settler(db, writer),
            Deliverer(db, writer, settings.upstream, dkim=settings.dkim,
                      helo=helo_name(settings.public_url)),
        )  # fmt: skip

    async def read(self, fn: Callable[Concatenate[Conn, P], T], *a: P.args, **kw: P.kwargs) -> T:
        """Run a query on a reader thread, off the event loop."""
        return await anyio.to_thread.run_sync(lambda: self.db.read(fn, *a, **kw))
