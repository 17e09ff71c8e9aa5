from __future__ import annotations

import pytest

from services.core.devices import (
    normalize_cellphone,
    normalize_email,
    provider_for,
    token_problem,
)
from services.core.events import WebPushKeys, WebPushSubscription
from services.core.fields import Platform, ProviderName
from services.core.providers.apns import APNsProvider, is_apns_token
from services.core.providers.fcm import FCMProvider
from tests.unit.providers.keys import subscriber

APNS = "0f" * 32
ALL: set[ProviderName] = {"fcm", "apns", "webpush"}


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
    configured: set[ProviderName],
    expected: ProviderName | None,
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


@pytest.mark.parametrize(
    ("provider", "token"),
    [
        ("fcm", "f" * FCMProvider.token_limit),
        ("fcm", "dQw4w9WgXcQ:APA91bH-x_Y.z~"),
        ("apns", "0f" * (APNsProvider.token_limit // 2)),
    ],
)
def test_tokens_as_providers_issue_them_pass(provider: ProviderName, token: str) -> None:
    assert token_problem(provider, token, None, allow_http=False) is None


@pytest.mark.parametrize(
    ("provider", "token", "reason", "says"),
    [
        (
            "fcm",
            "f" * (FCMProvider.token_limit + 1),
            "DeviceTokenTooLong",
            "at most 1024 characters",
        ),
        ("apns", "0f" * 101, "DeviceTokenTooLong", "longer than APNs issues"),
        ("apns", "0f" * 31, "FailedToStoreDevice", "64 to 200 hex digits"),
        ("fcm", "fcm\x00token", "FailedToStoreDevice", "control characters"),
        ("fcm", "fcm\ntoken", "FailedToStoreDevice", "control characters"),
        ("fcm", "fcm\x85token", "FailedToStoreDevice", "control characters"),
        ("fcm", "fcm-token\t", "FailedToStoreDevice", "starts or ends with whitespace"),
        ("fcm", "\u00a0fcm-token", "FailedToStoreDevice", "starts or ends with whitespace"),
        ("fcm", "fcm\u202etoken", "FailedToStoreDevice", "only printable ASCII"),
        ("fcm", "fcm token", "FailedToStoreDevice", "only printable ASCII"),
    ],
)
def test_tokens_no_provider_issues_are_refused(
    provider: ProviderName, token: str, reason: str, says: str
) -> None:
    problem = token_problem(provider, token, None, allow_http=True)
    assert problem is not None
    assert problem.reason == reason
    assert says in problem.message


BROWSER = subscriber()


def _subscription(
    endpoint: str, p256dh: str = BROWSER.p256dh, auth: str = BROWSER.auth_b64
) -> WebPushSubscription:
    return WebPushSubscription(endpoint=endpoint, keys=WebPushKeys(p256dh=p256dh, auth=auth))


@pytest.mark.parametrize(
    ("subscription", "allow_http", "says"),
    [
        (_subscription("https://push.example.net/a"), False, None),
        (_subscription("http://127.0.0.1:9443/a"), True, None),
        (_subscription("http://127.0.0.1:9443/a"), False, "not an https:// URL"),
        (_subscription("file:///etc/passwd"), True, "not an https:// or http:// URL"),
        (_subscription("gopher://push.example.net/a"), False, "not an https:// URL"),
        (_subscription("https:///a"), False, "not an https:// URL"),
        (_subscription("https://push.example.net/a", p256dh="AAAA"), False, "P-256 public key"),
        (_subscription("https://push.example.net/a", p256dh="!" * 87), False, "P-256 public key"),
        (
            _subscription("https://push.example.net/a", auth=BROWSER.auth_b64[:-2]),
            False,
            "16 bytes",
        ),
    ],
)
def test_web_push_subscriptions_need_https_and_usable_keys(
    subscription: WebPushSubscription, allow_http: bool, says: str | None
) -> None:
    problem = token_problem("webpush", subscription.endpoint, subscription, allow_http=allow_http)
    if says is None:
        assert problem is None
    else:
        assert problem is not None
        assert says in problem.message
