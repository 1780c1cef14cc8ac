"""How much is tracked, and what is kept of a hit.

Tracking modes, from the strictest (RESEARCH.md §6: since 2026 the French and Italian
regulators treat open and click tracking as needing the recipient's consent):

- ``off``: no pixel, links left as they are, nothing registered;
- ``anonymous``: counted, but nothing names the recipient: the message is registered without
  their address, its hits keep only the verdict and the client, and nothing notifies;
- ``pseudonymous``: per recipient, but a hit keeps no address, User-Agent or other header, only
  the verdict, the client and the time;
- ``full``: everything, within the server's minimisation settings (``--ip-truncation``,
  ``--keep-user-agents``).

A mode is set for the user (their default), for a send (the ``tracking`` field of the API, the
relay's header, ``mailbeacon send --tracking``) and for the recipient, whose consent counts too:
``denied`` is ``off``, and so is ``unknown`` for a user who requires consent. The strictest wins.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mailbeacon.tracking.tokens import Signer

Mode = Literal["off", "anonymous", "pseudonymous", "full"]
MODES: tuple[Mode, ...] = ("off", "anonymous", "pseudonymous", "full")  # the strictest first
CONSENT = ("unknown", "granted", "denied")
# The address an anonymous message is registered with: one recipient for them all.
ANONYMOUS = "anonymous"
# Hit fields (queries.HIT_FIELDS) that say who fetched: kept in full mode only.
_IP, _USER_AGENT = 5, 6
_HEADERS = range(6, 12)  # user_agent, accept, accept_language, referer, via, purpose
_REASONS = 15
NOT_KEPT = "Not kept: {mode} tracking keeps the verdict, not what it was read from."


def mode(value: object, field: str = "tracking") -> Mode:
    """A mode from user input; ``ValueError`` saying which are allowed."""
    for known in MODES:
        if value == known:
            return known
    raise ValueError(f"{field}: one of {', '.join(MODES)}")


def strictest(*modes: str) -> Mode:
    return MODES[min(MODES.index(mode(m)) for m in modes)]


def recipient_mode(tracking: str, consent: str, consent_required: bool) -> Mode:
    """What a recipient allows: their own mode, unless their consent says off."""
    if consent == "denied" or (consent == "unknown" and consent_required):
        return "off"
    return mode(tracking)


@dataclass(frozen=True)
class Minimising:
    """What the server keeps of a hit in full mode."""

    ip_prefix: int = 0  # 0: the whole address; else IPv4 /ip_prefix and IPv6 /48
    keep_user_agents: bool = True

    def row(self, row: Sequence[Any], tracking: str) -> tuple[Any, ...]:
        """A classified hit row as stored: what ``tracking`` and these settings keep of who
        fetched (classification has already seen everything)."""
        if tracking == "full" and not self.ip_prefix and self.keep_user_agents:
            return tuple(row)  # the pixel's usual path: nothing to take out
        kept = list(row)
        if tracking != "full":
            kept[_IP] = ""
            for i in _HEADERS:
                kept[i] = ""
            # The reasons quote what the request carried (a browser's version, a header): only
            # the rules that decided are kept.
            why = NOT_KEPT.format(mode=tracking)
            rules = [{"rule": r["rule"], "why": why} for r in json.loads(kept[_REASONS])]
            kept[_REASONS] = json.dumps(rules)
            return tuple(kept)
        if self.ip_prefix:
            kept[_IP] = truncate(str(kept[_IP]), self.ip_prefix)
        if not self.keep_user_agents:
            kept[_USER_AGENT] = ""
        return tuple(kept)


KEEP_ALL = Minimising()


def consent_url(signer: Signer, public_url: str, message_id: str) -> str:
    """The page where a message's recipient allows or refuses tracking (``web.consent``)."""
    return f"{public_url}/p/{signer.sign('p', message_id)}"


def truncate(ip: str, prefix: int) -> str:
    """The address with its host part zeroed: IPv4 to ``/prefix``, IPv6 to /48."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    bits = prefix if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False).network_address)
