"""What the classifier needs to know of a hit's message, kept in memory: a message's sender,
time of sending and submitting address never change once it is registered."""

from __future__ import annotations

from mailbeacon.classify.rules import MessageFacts
from mailbeacon.store import queries
from mailbeacon.store.db import Conn

CACHE_SIZE = 100_000


def read_facts(conn: Conn, message_id: str) -> MessageFacts | None:
    row = queries.message_facts(conn, message_id)
    return None if row is None else MessageFacts(*row)


class KnownMessages:
    """A bounded memo of :func:`read_facts` (emptied when full: cheap, and rare)."""

    def __init__(self) -> None:
        self._facts: dict[str, MessageFacts | None] = {}

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._facts

    def get(self, message_id: str) -> MessageFacts | None:
        return self._facts.get(message_id)

    def put(self, message_id: str, facts: MessageFacts | None) -> None:
        if len(self._facts) >= CACHE_SIZE:
            self._facts.clear()
        self._facts[message_id] = facts

    def read(self, conn: Conn, message_id: str) -> MessageFacts | None:
        """The facts, from memory or else from ``conn``."""
        if message_id not in self._facts:
            self.put(message_id, read_facts(conn, message_id))
        return self._facts[message_id]
