"""Reading one row of the store in a test, as a dict of its columns."""

from __future__ import annotations

from typing import Any

from mailbeacon.store.db import Database


def row_of(db: Database, sql: str, params: tuple[Any, ...], columns: str) -> dict[str, Any]:
    """``SELECT {columns} {sql}``, which must find a row."""
    row = db.read(lambda conn: conn.one(f"SELECT {columns} {sql}", params))
    assert row is not None
    return dict(zip(columns.replace(" ", "").split(","), row, strict=True))
