"""What a running server holds: settings, the database, its writer and the token signer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

import anyio.to_thread

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

    @classmethod
    def open(cls, settings: Settings) -> Services:
        db = Database(settings.db)
        return cls(settings, db, Writer(db), Signer(settings.secrets))

    async def read(self, fn: Callable[Concatenate[Conn, P], T], *a: P.args, **kw: P.kwargs) -> T:
        """Run a query on a reader thread, off the event loop."""
        return await anyio.to_thread.run_sync(lambda: self.db.read(fn, *a, **kw))
