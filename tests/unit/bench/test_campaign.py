from __future__ import annotations

import pytest

from bench.campaign import DEFAULT_MIX, parse_mix, rotation
from bench.harness import shares


def test_a_mix_is_parsed_in_order() -> None:
    assert parse_mix("fcm=60,apns=30,webpush=10") == DEFAULT_MIX
    assert parse_mix(" apns = 100 ") == (("apns", 100),)


@pytest.mark.parametrize(
    "text",
    [
        "fcm=60,apns=30",  # 90
        "fcm=60,apns=30,webpush=10,fcm=0",  # named twice
        "fcm=60,apns=30,huawei=10",
        "fcm=50.5,apns=49.5",
        "fcm=-10,apns=110",
        "fcm,apns=100",
        "",
    ],
)
def test_a_mix_that_is_not_whole_percentages_of_known_providers_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"provider=percent|twice|add up to 100"):
        parse_mix(text)


def test_the_rotation_holds_the_mix_in_lowest_terms() -> None:
    assert rotation(DEFAULT_MIX) == ("fcm",) * 6 + ("apns",) * 3 + ("webpush",)
    assert rotation((("fcm", 50), ("apns", 0), ("webpush", 50))) == ("fcm", "webpush")
    assert rotation((("apns", 100),)) == ("apns",)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (20_000, {"fcm": 12_000, "apns": 6_000, "webpush": 2_000}),
        (1_000_000, {"fcm": 600_000, "apns": 300_000, "webpush": 100_000}),
        # The rotation's first entries are FCM's: a remainder goes to them first.
        (305, {"fcm": 185, "apns": 90, "webpush": 30}),
        (3, {"fcm": 3, "apns": 0, "webpush": 0}),
    ],
)
def test_shares_count_each_providers_devices_of_the_audience(
    count: int, expected: dict[str, int]
) -> None:
    assert shares(count, rotation(DEFAULT_MIX)) == expected
    assert sum(expected.values()) == count
