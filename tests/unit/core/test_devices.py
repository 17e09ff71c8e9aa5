from __future__ import annotations

import pytest

from services.core.devices import (
    is_apns_token,
    normalize_cellphone,
    normalize_email,
    provider_for,
)
from services.core.events import Platform, Provider

APNS = "0f" * 32
ALL: set[Provider] = {"fcm", "apns", "webpush"}


@pytest.mark.parametrize(
    ("platform", "token", "subscription", "configured", "expected"),
    [
        ("android", "fcm-token", False, ALL, "fcm"),
        ("android", APNS, False, ALL, "fcm"),
        ("ios", APNS, False, ALL, "apns"),
        ("ios", APNS, False, {"fcm"}, "fcm"),
        ("ios", "fcm-token", False, ALL, "fcm"),
        ("ios", "fcm-token", False, {"apns"}, None),
        ("web", "https://push.example/x", True, ALL, "webpush"),
        ("web", "https://push.example/x", True, {"fcm"}, None),
        ("web", "fcm-web-token", False, ALL, "fcm"),
        ("android", "fcm-token", False, set(), None),
    ],
)
def test_provider_choice(
    platform: Platform,
    token: str,
    subscription: bool,
    configured: set[Provider],
    expected: Provider | None,
) -> None:
    chosen = provider_for(platform, token, web_subscription=subscription, configured=configured)
    assert chosen == expected


def test_apns_token_shape() -> None:
    assert is_apns_token(APNS)
    assert not is_apns_token("0f" * 31)
    assert not is_apns_token("z" * 64)


@pytest.mark.parametrize(
    ("given", "stored"), [("573141234567", "573141234567"), (" +573141234567 ", "573141234567")]
)
def test_cellphones_are_digits_only(given: str, stored: str) -> None:
    assert normalize_cellphone(given) == stored


@pytest.mark.parametrize("bad", ["3141234", "57 314 1234567", "+57-314", "1" * 16, "phone"])
def test_bad_cellphones_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="country code"):
        normalize_cellphone(bad)


def test_emails_are_lower_cased_and_checked() -> None:
    assert normalize_email(" Usuario@Empresa.COM ") == "usuario@empresa.com"
    for bad in ("usuario", "usuario@", "@empresa.com", "a b@c.co", "a@localhost", "a@b.c" * 50):
        with pytest.raises(ValueError, match="not a valid address"):
            normalize_email(bad)
