"""How ``serve`` logs: one line a record on standard error, as text for a person
(``--log-format text``) or as a JSON object for a log collector (``--log-format json``, with
``python-json-logger``): ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, and
``exc_info`` with the traceback when there is one. granian's own records go the same way.
"""

from __future__ import annotations

import logging.config
from typing import Any

FORMATS = ("text", "json")
_TEXT = {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
_JSON = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": "time",
    "json_ensure_ascii": False,
}


def config(log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``log_format`` (one of ``FORMATS``), also given to
    granian, which would otherwise set up its own handlers."""
    formatter = _JSON if log_format == "json" else _TEXT
    handler = {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter, "generic": formatter, "access": formatter},
        "handlers": {"console": handler, "access": handler},
        "root": {"handlers": ["console"], "level": "INFO"},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def setup(log_format: str) -> dict[str, Any]:
    """Log this process as ``log_format`` says; the configuration, for granian."""
    found = config(log_format)
    logging.config.dictConfig(found)
    return found
