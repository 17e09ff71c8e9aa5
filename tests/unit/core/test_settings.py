from __future__ import annotations

import base64
import os
import re
import secrets
from datetime import timedelta

import pytest

from services.core.errors import ConfigError
from services.core.providers.fcm import FCMSettings
from services.core.providers.registry import names
from services.core.providers.webpush import WebPushSettings
from services.core.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "PUSHLINE_KAFKA_BOOTSTRAP",
        "PUSHLINE_MONGODB_URI",
        "PUSHLINE_TOPIC_PARTITIONS",
        "PUSHLINE_INGEST_PORT",
        "PUSHLINE_FCM_ENDPOINT",
        "PUSHLINE_MASTER_KEY",
        "PUSHLINE_DELIVERY_RETENTION",
        "PUSHLINE_NOTIFICATION_RETENTION",
        "PUSHLINE_SANDBOX_FCM",
        "PUSHLINE_SANDBOX_APNS",
        "PUSHLINE_SANDBOX_WEBPUSH",
        "PUSHLINE_PROVIDER_QUOTAS",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_documented_local_stack() -> None:
    settings = load_settings()
    assert settings.kafka_servers == ["127.0.0.1:9092"]
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27017/pushline"
    assert settings.ingest_port == 8080
    assert settings.topic_partitions == 8
    assert settings.admin_token is None
    # The admin listener: loopback, a port of its own.
    assert (settings.admin_host, settings.admin_port) == ("127.0.0.1", 8081)
    assert settings.webhook_allow_private is False


def test_reads_pushline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLINE_KAFKA_BOOTSTRAP", "kafka-0:9092, kafka-1:9092")
    monkeypatch.setenv("PUSHLINE_TOPIC_PARTITIONS", "24")
    monkeypatch.setenv("PUSHLINE_FCM_ENDPOINT", "http://127.0.0.1:9443/")
    settings = load_settings()
    assert settings.kafka_servers == ["kafka-0:9092", "kafka-1:9092"]
    assert settings.topic_partitions == 24
    fcm = settings.provider_settings["fcm"]
    assert isinstance(fcm, FCMSettings)
    assert fcm.endpoint == "http://127.0.0.1:9443"


@pytest.mark.parametrize(
    "bootstrap",
    ["localhost", "localhost:", "localhost:99999", "kafka://localhost:9092", "a:1,,b:2", ""],
)
def test_malformed_bootstrap_is_rejected_by_name(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str
) -> None:
    monkeypatch.setenv("PUSHLINE_KAFKA_BOOTSTRAP", bootstrap)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "PUSHLINE_KAFKA_BOOTSTRAP" in message
    assert "host:port" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PUSHLINE_MONGODB_URI", "postgres://db/pushline"),
        ("PUSHLINE_TOPIC_PARTITIONS", "0"),
        ("PUSHLINE_INGEST_PORT", "eighty"),
        ("PUSHLINE_FCM_ENDPOINT", "fcm.googleapis.com"),
    ],
)
def test_other_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_extra_providers_are_name_module_class_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLINE_EXTRA_PROVIDERS", "huawei=acme.push.huawei:HuaweiProvider")
    assert Settings().extra_providers == {"huawei": "acme.push.huawei:HuaweiProvider"}
    monkeypatch.setenv("PUSHLINE_EXTRA_PROVIDERS", "huawei=acme.push.huawei")
    with pytest.raises(ConfigError, match=r"PUSHLINE_EXTRA_PROVIDERS: .*name=module:Class"):
        load_settings()
    monkeypatch.setenv("PUSHLINE_EXTRA_PROVIDERS", "huawei=acme.push.huawei:HuaweiProvider")
    with pytest.raises(ConfigError, match="provider 'huawei': cannot import"):
        load_settings()
    assert "huawei" not in names()


def test_ipv6_bootstrap_is_accepted() -> None:
    assert Settings(kafka_bootstrap="[::1]:9092").kafka_servers == ["[::1]:9092"]


def test_secrets_do_not_show_in_repr() -> None:
    master_key = secrets.token_urlsafe(32)
    settings = Settings(admin_token="admin-secret", master_key=master_key)
    assert "admin-secret" not in repr(settings)
    assert master_key not in repr(settings)


@pytest.mark.parametrize(
    "master_key",
    [
        # What `make run` generates: 32 random bytes, base64url without padding.
        base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
        base64.b64encode(os.urandom(32)).decode(),  # openssl rand -base64 32
        os.urandom(32).hex(),  # openssl rand -hex 32
        base64.b64encode(os.urandom(48)).decode() + "\n",
    ],
)
def test_a_master_key_of_32_random_bytes_or_more_is_accepted(
    monkeypatch: pytest.MonkeyPatch, master_key: str
) -> None:
    monkeypatch.setenv("PUSHLINE_MASTER_KEY", master_key)
    settings = load_settings()
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == master_key


@pytest.mark.parametrize(
    "master_key",
    [
        "short",
        "",
        "master-secret-that-is-long-but-a-phrase!",
        base64.b64encode(os.urandom(31)).decode(),  # one byte short
        os.urandom(31).hex(),
        "a" * 64,  # hex of 32 equal bytes
        "AAAA" * 11,  # base64 of 33 zero bytes
    ],
)
def test_a_guessable_master_key_is_refused_saying_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, master_key: str
) -> None:
    monkeypatch.setenv("PUSHLINE_MASTER_KEY", master_key)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("invalid configuration: PUSHLINE_MASTER_KEY: ")
    assert "make one with: openssl rand -base64 32" in message
    if master_key:
        assert master_key not in message


def test_webpush_private_targets_are_a_comma_separated_host_port_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUSHLINE_WEBPUSH_PRIVATE_TARGETS", "Push.Internal:8443, [::1]:9443")
    webpush = load_settings().provider_settings["webpush"]
    assert isinstance(webpush, WebPushSettings)
    assert webpush.private_targets == ("push.internal:8443", "[::1]:9443")
    monkeypatch.setenv("PUSHLINE_WEBPUSH_PRIVATE_TARGETS", "push.internal")
    with pytest.raises(ConfigError, match="PUSHLINE_WEBPUSH_PRIVATE_TARGETS"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7d", 7 * 86_400), ("12h", 12 * 3_600), ("30m", 1_800), ("90s", 90), ("3600", 3_600)],
)
def test_delivery_retention_reads_a_duration(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: int
) -> None:
    monkeypatch.setenv("PUSHLINE_DELIVERY_RETENTION", value)
    assert load_settings().delivery_retention == timedelta(seconds=seconds)


def test_retentions_default_to_a_week_and_ninety_days() -> None:
    settings = load_settings()
    assert settings.delivery_retention == timedelta(days=7)
    assert settings.notification_retention == timedelta(days=90)


@pytest.mark.parametrize("value", ["7 days", "1w", "-1d", "0", "1.5h", ""])
def test_a_retention_that_is_no_positive_duration_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PUSHLINE_DELIVERY_RETENTION", value)
    with pytest.raises(ConfigError, match="PUSHLINE_DELIVERY_RETENTION"):
        load_settings()


@pytest.mark.parametrize(("deliveries", "notifications"), [("30d", "7d"), ("1h", "12h")])
def test_notifications_may_not_go_before_their_records_or_the_idempotency_window(
    monkeypatch: pytest.MonkeyPatch, deliveries: str, notifications: str
) -> None:
    monkeypatch.setenv("PUSHLINE_DELIVERY_RETENTION", deliveries)
    monkeypatch.setenv("PUSHLINE_NOTIFICATION_RETENTION", notifications)
    with pytest.raises(ConfigError, match="PUSHLINE_NOTIFICATION_RETENTION must be at least"):
        load_settings()


def test_no_sandbox_is_configured_by_default() -> None:
    assert not load_settings().sandbox.configured


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json", "PUSHLINE_SANDBOX_FCM: Value error, expected a JSON document"),
        ('{"endpoint": "ftp://x"}', "PUSHLINE_SANDBOX_FCM.ENDPOINT"),
        ('{"endpoint": "http://127.0.0.1:9441"}', "PUSHLINE_SANDBOX_FCM.CREDENTIALS"),
    ],
)
def test_a_bad_sandbox_setting_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("PUSHLINE_SANDBOX_FCM", value)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings()


def test_the_admin_listener_may_not_take_the_public_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLINE_INGEST_PORT", "9000")
    monkeypatch.setenv("PUSHLINE_ADMIN_PORT", "9000")
    # Without an admin token there is no admin listener to clash with.
    assert load_settings().admin_port == 9000
    monkeypatch.setenv("PUSHLINE_ADMIN_TOKEN", "admin-secret")
    with pytest.raises(
        ConfigError, match="PUSHLINE_ADMIN_PORT must differ from PUSHLINE_INGEST_PORT"
    ):
        load_settings()


def test_provider_quotas_are_a_json_map_of_sends_per_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().provider_quotas == {}
    monkeypatch.setenv(
        "PUSHLINE_PROVIDER_QUOTAS",
        '{"fcm:my-project": 20000, "apns:ABCDE12345": 5000, "webpush": 0}',
    )
    assert load_settings().provider_quotas == {
        "fcm:my-project": 20000.0,
        "apns:ABCDE12345": 5000.0,
        "webpush": 0.0,
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[1, 2]", "valid dictionary"),
        ("{fcm: 1}", "expected a JSON document"),
        ('{"fcm": -1}', "greater than or equal to 0"),
        ('{"fcm": "fast"}', "valid number"),
        ('{"FCM project": 5}', "expected keys such as fcm or fcm:my-project"),
        ('{"huawei:app": 5}', "no provider called huawei"),
    ],
)
def test_bad_provider_quotas_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("PUSHLINE_PROVIDER_QUOTAS", value)
    with pytest.raises(ConfigError, match="PUSHLINE_PROVIDER_QUOTAS") as raised:
        load_settings()
    assert problem in str(raised.value)
