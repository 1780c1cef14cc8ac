"""The recipient list of a campaign: a CSV file with a header row and an ``email`` column.

Every column is a template variable. A row that cannot be sent to (a bad address, the wrong
number of fields, an address already listed) is kept aside with its line number and the reason,
so that one bad row never stops a campaign.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

EMAIL_COLUMN = "email"
NAME_COLUMN = "name"  # when present, the display name in To
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3, a path of 256 with its angle brackets

# A plain ASCII address, dot-atom on both sides (RFC 5322 §3.4.1): what every SMTP server takes.
# Quoted local parts, address literals and international addresses are refused rather than
# half-supported: the row is reported, not sent.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")


class ListError(Exception):
    """The list as a whole cannot be used (no header, no ``email`` column); the text says why."""


def address_problem(value: str) -> str | None:
    """Why ``value`` is not an address we send to, or None when it is one."""
    if not value:
        return "no address in the `email` column"
    if len(value) > MAX_ADDRESS:
        return f"the address is longer than {MAX_ADDRESS} characters"
    if _ADDRESS.fullmatch(value) is None:
        return f"{value!r} is not a plain email address (user@example.com)"
    return None


@dataclass(frozen=True)
class Recipient:
    line: int  # where its row ends in the file (a quoted field may span lines)
    address: str
    variables: Mapping[str, str]  # every column of its row

    @property
    def key(self) -> str:
        """The address as campaigns and suppressions compare it."""
        return self.address.lower()


@dataclass
class RecipientList:
    columns: list[str]
    recipients: list[Recipient] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # line, why

    @property
    def rows(self) -> int:
        return len(self.recipients) + len(self.bad)


def read_list(path: Path, reserved: Iterable[str] = ()) -> RecipientList:
    """Read a recipient list; ``reserved`` are variable names a column may not take."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:  # -sig: Excel's BOM
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise ListError("the file is empty: it needs a header row with an `email` column")
            found = RecipientList([name.strip() for name in header])
            _check_header(found.columns, set(reserved))
            first_line: dict[str, int] = {}
            for row in reader:
                _add(found, reader.line_num, row, first_line)
    except UnicodeDecodeError as exc:
        raise ListError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise ListError(f"not a CSV file ({exc})") from exc
    return found


def _add(found: RecipientList, line: int, row: list[str], first_line: dict[str, int]) -> None:
    if not any(cell.strip() for cell in row):
        return  # a blank line, often the last one
    if len(row) != len(found.columns):
        found.bad.append((line, f"{len(row)} fields where the header has {len(found.columns)}"))
        return
    variables = dict(zip(found.columns, row, strict=True))
    address = variables[EMAIL_COLUMN].strip()
    problem = address_problem(address)
    if problem is None and address.lower() in first_line:
        problem = f"{address} is already on line {first_line[address.lower()]}"
    if problem is not None:
        found.bad.append((line, problem))
        return
    first_line[address.lower()] = line
    found.recipients.append(Recipient(line, address, variables))


def _check_header(columns: list[str], reserved: set[str]) -> None:
    if EMAIL_COLUMN not in columns:
        named = ", ".join(repr(c) for c in columns)
        raise ListError(
            f"line 1: no `{EMAIL_COLUMN}` column in the header row (it has {named}); "
            f"the first row names the columns and one of them must be `{EMAIL_COLUMN}`"
        )
    seen: set[str] = set()
    for number, name in enumerate(columns, start=1):
        if not name:
            raise ListError(f"line 1: column {number} has no name")
        if name in seen:
            raise ListError(f"line 1: two columns are named {name!r}")
        if name in reserved:
            raise ListError(f"line 1: {name!r} is set by mailbeacon; rename that column")
        seen.add(name)
