"""Text from outside, made fit to store and to show on one line.

Both stores refuse what is not Unicode text (an unpaired surrogate, which JSON can carry as
``\\ud800``), and PostgreSQL refuses NUL: such characters become U+FFFD, never an error.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def storable(value: str) -> str:
    """``value`` with NUL and unpaired surrogates as U+FFFD (ASCII without NUL: as it is)."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def unstorable(value: str) -> bool:
    """Whether ``storable`` would change ``value``."""
    return storable(value) != value


def single_line(value: str, limit: int) -> str:
    """Text for a header or a name: control characters (CR, LF, NUL…) as one space, trimmed,
    cut to ``limit``. An encoded word can hide CR, LF or NUL: header injection in whatever
    writes it into a header later (CPython CVE-2024-6923)."""
    return _CONTROL.sub(" ", value).strip()[:limit]
