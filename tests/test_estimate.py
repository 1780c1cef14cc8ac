"""The estimated open rate: the invisible opens, estimated from what was seen."""

from __future__ import annotations

from mailbeacon.stats.estimate import Seen, estimate


def seen(**changes: object) -> Seen:
    base: dict[str, object] = {
        "delivered": 1000, "inferred": 300, "mpp": 0, "mpp_inferred": 0, "opened": 300,
        "clicked": 50, "both": 50, "blocked_clients": {},
    }  # fmt: skip
    return Seen(**{**base, **changes})  # type: ignore[arg-type]


def test_when_every_open_is_seen_the_estimate_is_what_was_seen() -> None:
    found = estimate(seen())
    assert found.rate == 0.3
    assert found.low <= 0.3 <= found.high


def test_clickers_whose_open_was_not_seen_reveal_blocked_images() -> None:
    # Half the clickers showed no open: many opens are invisible (the prior, that every client
    # seen loads images, holds the estimate back: 50 clickers' worth).
    found = estimate(seen(inferred=325, opened=300, clicked=50, both=25))
    assert 0.38 < found.rate < 0.6
    assert found.visibility <= 0.75
    # More of the same evidence moves it further.
    more = estimate(seen(inferred=650, opened=300, clicked=500, both=250))
    assert more.visibility < found.visibility
    assert found.low < found.rate < found.high


def test_seen_outlook_opens_stand_for_more_unseen_ones_until_clicks_say_otherwise() -> None:
    no_clicks = seen(inferred=200, opened=200, clicked=0, both=0, blocked_clients={"outlook": 70})
    found = estimate(no_clicks)
    # 70 Outlook opens seen at 35% stand for 200: 130 more than seen.
    assert abs(found.rate - 0.33) < 0.01


def test_apple_protected_recipients_open_like_the_others() -> None:
    found = estimate(seen(delivered=1000, mpp=500, inferred=150, opened=150, clicked=25, both=25))
    assert abs(found.rate - 0.3) < 0.005


def test_the_interval_never_goes_below_what_was_inferred() -> None:
    found = estimate(seen(delivered=10, inferred=9, opened=9, clicked=0, both=0))
    assert found.low >= 0.9
    assert found.high <= 1.0


def test_nothing_delivered_is_zero() -> None:
    assert estimate(seen(delivered=0, inferred=0, opened=0, clicked=0, both=0)).rate == 0.0
