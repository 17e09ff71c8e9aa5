"""Typed settings, read once from `PUSHLINE_*` environment variables.

Only `load_settings()` reads the environment; everything else receives a `Settings`. Each
provider has its own block (`Provider.settings_model`, `PUSHLINE_FCM_ENDPOINT` and so on),
read beside the rest into `Settings.provider_settings`; a provider's client gets its block
alone. Where sandbox apps deliver (`PUSHLINE_SANDBOX_*`) is the `SandboxSettings` block,
read beside them into `Settings.sandbox`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.core.credentials import APNSCredentials, FCMCredentials, WebPushCredentials
from services.core.errors import ConfigError
from services.core.providers import registry
from services.core.providers.base import ProviderSettings
from services.core.secrets import check_master_key

# A duration: whole days, hours, minutes or seconds (`7d`, `12h`, `30m`, `90s`, `3600`).
_DURATION = re.compile(r"^(\d{1,9})([dhms]?)$")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1, "": 1}
# Notifications outlive the 24-hour Idempotency-Key window: a request sent again within it
# must still find the first request's notification.
_SHORTEST_NOTIFICATION_RETENTION = timedelta(days=1)

# host:port, host being a name, an IPv4 address or a bracketed IPv6 address.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def _host_ports(value: str) -> list[str]:
    servers = [part.strip() for part in value.split(",")]
    for server in servers:
        match = _HOST_PORT.match(server)
        if not match or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"expected host:port[,host:port...] with ports 1-65535, got {value!r}")
    return servers


def _bootstrap(value: str) -> str:
    return ",".join(_host_ports(value))


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return value.split(",") if value.strip() else ()
    return value


def _targets(value: tuple[str, ...]) -> tuple[str, ...]:
    # Host names compare in lower case, as URLs give them.
    return tuple(server.lower() for server in _host_ports(",".join(value))) if value else ()


# name=module:Class, the name a provider's, the class its `Provider`.
_EXTRA_PROVIDER = re.compile(r"^([a-z][a-z0-9]{1,19})=([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


def _extra_providers(value: object) -> object:
    if not isinstance(value, str):
        return value
    extra: dict[str, str] = {}
    for entry in (part.strip() for part in value.split(",") if part.strip()):
        match = _EXTRA_PROVIDER.match(entry)
        if not match:
            raise ValueError(f"expected name=module:Class[,name=module:Class...], got {entry!r}")
        extra[match.group(1)] = f"{match.group(2)}:{match.group(3)}"
    return extra


def _mongodb_uri(value: str) -> str:
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(f"expected a mongodb:// or mongodb+srv:// URI, got {value[:40]!r}")
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _json(value: object) -> object:
    # Decoded here rather than by pydantic-settings, so that a bad document is reported as
    # a problem of its variable.
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise ValueError("expected a JSON document") from None


# A quota's key: a provider's name, alone (its every scope) or with one scope.
_QUOTA_KEY = re.compile(r"^[a-z][a-z0-9]{1,19}(:\S{1,300})?$")


def _quotas_json(value: object) -> object:
    decoded = _json(value)
    return {} if decoded is None else decoded


def _quota_keys(value: dict[str, float]) -> dict[str, float]:
    for key in value:
        if not _QUOTA_KEY.match(key):
            raise ValueError(f"expected keys such as fcm or fcm:my-project, got {key[:40]!r}")
    return value


def _master_key(value: SecretStr) -> SecretStr:
    check_master_key(value.get_secret_value())
    return value


def _duration(value: object) -> object:
    # Numbers and timedeltas pass through to pydantic (a number is seconds).
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"expected a duration such as 7d, 12h, 30m or 3600 seconds, got {value!r}")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("expected a duration above zero")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
Bootstrap = Annotated[str, AfterValidator(_bootstrap)]
Targets = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(_comma_list), AfterValidator(_targets)
]
MongoURI = Annotated[str, AfterValidator(_mongodb_uri)]
HttpURL = Annotated[str, AfterValidator(_http_url)]
Port = Annotated[int, Field(ge=1, le=65535)]
ExtraProviders = Annotated[dict[str, str], NoDecode, BeforeValidator(_extra_providers)]
# Sends per second by provider or provider:scope; 0 is no budget.
Quotas = Annotated[
    dict[str, Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]],
    NoDecode,
    BeforeValidator(_quotas_json),
    AfterValidator(_quota_keys),
]
_Target = TypeVar("_Target", bound=BaseModel)
Sandbox = Annotated[_Target | None, NoDecode, BeforeValidator(_json)]


class _SandboxTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The emulator's base URL, in place of the provider's.
    endpoint: HttpURL


class FCMSandbox(_SandboxTarget):
    """`PUSHLINE_SANDBOX_FCM`: `{"endpoint", "credentials": {"service_account": {...}}}`."""

    credentials: FCMCredentials


class APNSSandbox(_SandboxTarget):
    """`PUSHLINE_SANDBOX_APNS`: `{"endpoint", "ca_file", "credentials": {"team_id",
    "key_id", "topic", "private_key"}}`; `ca_file` is the CA of the emulator's TLS."""

    ca_file: Path
    credentials: APNSCredentials


class WebPushSandbox(_SandboxTarget):
    """`PUSHLINE_SANDBOX_WEBPUSH`: `{"endpoint", "credentials": {"vapid_private_key",
    "vapid_public_key", "subject"}}`; its subscriptions' endpoints are under `endpoint`."""

    credentials: WebPushCredentials


class SandboxSettings(BaseSettings):
    """Where sandbox apps deliver instead of Google's and Apple's services, and the
    credentials they use there: the emulators of `pushline emulators`, which writes these
    variables for the services it runs beside (`$PUSHLINE_STATE_DIR/emulators/sandbox.env`).
    Each is a JSON document; a provider left unset has no sandbox."""

    model_config = SettingsConfigDict(env_prefix="PUSHLINE_SANDBOX_", frozen=True, extra="ignore")

    fcm: Sandbox[FCMSandbox] = None
    apns: Sandbox[APNSSandbox] = None
    webpush: Sandbox[WebPushSandbox] = None

    @property
    def configured(self) -> bool:
        """Whether any emulator is configured."""
        return any(emulator is not None for emulator in (self.fcm, self.apns, self.webpush))


class Settings(BaseSettings):
    """Every `PUSHLINE_*` variable; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="PUSHLINE_", frozen=True, extra="ignore")

    kafka_bootstrap: Bootstrap = "127.0.0.1:9092"
    mongodb_uri: MongoURI = "mongodb://127.0.0.1:27017/pushline"
    ingest_host: str = "127.0.0.1"
    ingest_port: Port = 8080
    admin_token: SecretStr | None = None
    # The admin API's own listener, run by the ingest beside the public one when
    # PUSHLINE_ADMIN_TOKEN is set; loopback, so only the machine (or pod) reaches it.
    admin_host: str = "127.0.0.1"
    admin_port: Port = 8081
    master_key: Annotated[SecretStr, AfterValidator(_master_key)] | None = None
    webhook_allow_private: bool = False
    # Providers served beside the built-in ones (services/core/providers/registry.py).
    extra_providers: ExtraProviders = {}
    # Each provider's settings block by name, read by `load_settings()`; a provider
    # without one here gets its block's defaults.
    provider_settings: Annotated[Mapping[str, ProviderSettings], Field(exclude=True)] = {}
    # The sandbox's emulators, read by `load_settings()`; none by default.
    sandbox: Annotated[SandboxSettings, Field(exclude=True)] = SandboxSettings.model_construct()
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 2**20)] = 2 * 2**20
    ingest_max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 128
    publish_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    ingest_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 8
    metrics_host: str = "127.0.0.1"
    metrics_port: Port | None = None
    send_attempts: Annotated[int, Field(ge=1, le=50)] = 5
    retry_base_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0
    send_concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    # Of those slots, how many bulk jobs leave to transactional ones (all but one at most).
    send_transactional_reserve: Annotated[int, Field(ge=0, le=256)] = 1
    namespace: Annotated[str, Field(pattern=r"^([a-z0-9][a-z0-9_-]{0,39})?$")] = ""
    emulator_fcm_port: Port = 9441
    emulator_apns_port: Port = 9442
    emulator_webpush_port: Port = 9443
    state_dir: Path = Path.home() / ".local" / "state" / "pushline"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    delivery_retention: Duration = timedelta(days=7)
    notification_retention: Duration = timedelta(days=90)
    retention_interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    # How often each app's provider credentials are checked again (the senders do it).
    credentials_check_interval: Duration = timedelta(hours=1)
    # Each account's rate limits unless its own say otherwise (services/core/store/limits.py).
    rate_requests_per_second: Annotated[float, Field(gt=0)] = 1000.0
    rate_requests_burst: Annotated[int, Field(ge=1)] = 2000
    rate_app_sends_per_second: Annotated[float, Field(gt=0)] = 100.0
    rate_app_sends_burst: Annotated[int, Field(ge=1)] = 200
    rate_notifications_per_second: Annotated[float, Field(gt=0)] = 20_000.0
    # The senders' budgets per provider quota scope, over the providers' own defaults
    # (services/sender/governor.py).
    provider_quotas: Quotas = {}

    @model_validator(mode="after")
    def _listeners(self) -> Settings:
        # The admin listener binding the public port would fail at start-up, or, on another
        # host address, put both APIs behind one port number: refused while reading.
        if self.admin_token is not None and self.admin_port == self.ingest_port:
            raise ValueError("PUSHLINE_ADMIN_PORT must differ from PUSHLINE_INGEST_PORT")
        return self

    @model_validator(mode="after")
    def _retentions(self) -> Settings:
        # A notification's per-send records are found through the notification: it must
        # not go before them.
        if self.notification_retention < max(
            self.delivery_retention, _SHORTEST_NOTIFICATION_RETENTION
        ):
            raise ValueError(
                "PUSHLINE_NOTIFICATION_RETENTION must be at least PUSHLINE_DELIVERY_RETENTION "
                "and at least 1d"
            )
        return self

    def scoped(self, name: str) -> str:
        """A topic name or consumer group id inside this deployment's namespace.

        Several deployments (staging and production, or parallel test runs) can share one
        Kafka cluster when each has its own `PUSHLINE_NAMESPACE`.
        """
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def kafka_servers(self) -> list[str]:
        """The bootstrap servers as a list, as aiokafka takes them."""
        return self.kafka_bootstrap.split(",")


def load_settings() -> Settings:
    """Read and validate the environment once: the settings, then, with the providers of
    `PUSHLINE_EXTRA_PROVIDERS` installed beside the built-in ones, each provider's block,
    then the sandbox's.

    Raises ConfigError naming each bad variable, its problem and the value's start, or
    the provider that cannot be loaded.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(_problems(exc, "PUSHLINE_")) from exc
    registry.install(settings.extra_providers)
    quoted = {key.partition(":")[0] for key in settings.provider_quotas}
    unknown = sorted(quoted - set(registry.names()))
    if unknown:
        raise ConfigError(
            "invalid configuration: PUSHLINE_PROVIDER_QUOTAS: no provider called "
            + ", ".join(unknown)
        )
    blocks: dict[str, ProviderSettings] = {}
    for name in registry.names():
        model = registry.provider_class(name).settings_model
        try:
            blocks[name] = model()
        except ValidationError as exc:
            prefix = str(model.model_config.get("env_prefix", "PUSHLINE_"))
            raise ConfigError(_problems(exc, prefix)) from exc
    try:
        sandbox = SandboxSettings()
    except ValidationError as exc:
        raise ConfigError(_problems(exc, "PUSHLINE_SANDBOX_")) from exc
    return settings.model_copy(update={"provider_settings": blocks, "sandbox": sandbox})


def _problems(exc: ValidationError, prefix: str) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        # A check across variables has no location; its message names them.
        if not field:
            problems.append(error["msg"])
        else:
            variable = field.upper() if field.startswith("PUSHLINE_") else prefix + field.upper()
            problems.append(f"{variable}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)
