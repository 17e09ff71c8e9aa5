from __future__ import annotations

import pytest

from services.core.errors import ConfigError
from services.core.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "PUSHLINE_KAFKA_BOOTSTRAP",
        "PUSHLINE_MONGODB_URI",
        "PUSHLINE_TOPIC_PARTITIONS",
        "PUSHLINE_INGEST_PORT",
        "PUSHLINE_FCM_ENDPOINT",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_documented_local_stack() -> None:
    settings = load_settings()
    assert settings.kafka_servers == ["127.0.0.1:9092"]
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27017/pushline"
    assert settings.ingest_port == 8080
    assert settings.topic_partitions == 8
    assert settings.admin_token is None
    assert settings.webhook_allow_private is False


def test_reads_pushline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLINE_KAFKA_BOOTSTRAP", "kafka-0:9092, kafka-1:9092")
    monkeypatch.setenv("PUSHLINE_TOPIC_PARTITIONS", "24")
    monkeypatch.setenv("PUSHLINE_FCM_ENDPOINT", "http://127.0.0.1:9443/")
    settings = load_settings()
    assert settings.kafka_servers == ["kafka-0:9092", "kafka-1:9092"]
    assert settings.topic_partitions == 24
    assert settings.fcm_endpoint == "http://127.0.0.1:9443"


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


def test_ipv6_bootstrap_is_accepted() -> None:
    assert Settings(kafka_bootstrap="[::1]:9092").kafka_servers == ["[::1]:9092"]


def test_secrets_do_not_show_in_repr() -> None:
    settings = Settings(admin_token="admin-secret", master_key="master-secret")
    assert "admin-secret" not in repr(settings)
    assert "master-secret" not in repr(settings)


def test_webpush_private_targets_are_a_comma_separated_host_port_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUSHLINE_WEBPUSH_PRIVATE_TARGETS", "Push.Internal:8443, [::1]:9443")
    assert load_settings().webpush_private_targets == ("push.internal:8443", "[::1]:9443")
    monkeypatch.setenv("PUSHLINE_WEBPUSH_PRIVATE_TARGETS", "push.internal")
    with pytest.raises(ConfigError, match="PUSHLINE_WEBPUSH_PRIVATE_TARGETS"):
        load_settings()
