"""Credential checks: does each provider take the credentials an app holds?

Each provider says so without reaching a device (`Provider.check`): FCM an OAuth token and a
`validate_only` send, APNs a JWT-signed request to a token no device has, Web Push the VAPID
key pair matching when the provider is built. The verdict is the app's
`credentials_status[provider]` (services.core.store.credential_status):

- the provider judged the request past the credentials (any answer but `auth_config`,
  `retry` and `quota`): `valid: true`;
- it refused them (`auth_config`, or building the provider refused them): `valid: false`,
  `last_error` its code, status and message;
- no verdict (no answer, a 5xx, throttled, or longer than CHECK_TIMEOUT): the verdict stays
  as it was, `last_error` says why.

Credentials are checked when they are uploaded (`check_uploaded`, by the admin API and
`pushline admin`, before they answer) and again every PUSHLINE_CREDENTIALS_CHECK_INTERVAL
by the senders (`PeriodicChecks`): the process that talks to the providers, with their
settings, and the one that needs the credentials to work. One sender at a time checks,
under a lease; every sender exports every verdict as `pushline_app_credentials_valid`.
Sandbox apps deliver to the emulators whatever their credentials, so they are not checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime

from services.core import metrics
from services.core.credentials import CredentialStatus, ProviderCredentials
from services.core.errors import (
    MasterKeyMissingError,
    ProviderAuthError,
    PushlineError,
    SecretUnreadableError,
)
from services.core.providers import registry
from services.core.providers.base import ProviderSettings, Result
from services.core.providers.classify import ErrorClass
from services.core.settings import Settings
from services.core.store.apps import App, AppChanges, Apps, NewApp
from services.core.store.client import stored_now
from services.core.store.credential_status import CredentialStatuses
from services.core.store.leases import Lease

log = logging.getLogger(__name__)

# The longest one check may take (the provider's token endpoint, then its send endpoint).
CHECK_TIMEOUT = 15.0
# A checking sender renews its lease before each check; one that died holding it delays the
# next checks by at most this long.
LEASE_SECONDS = 120.0
# The longest between two runs of a sender's checks (more often if the interval is shorter).
TICK_SECONDS = 60.0
_LEASE = "credential-checks"
# Answers that say nothing of the credentials.
_NO_VERDICT = frozenset({ErrorClass.RETRYABLE, ErrorClass.QUOTA})


def verdict(
    result: Result | None, previous: CredentialStatus | None, at: datetime
) -> CredentialStatus:
    """What a check's `result` says of the credentials (None: the provider cannot check
    them), `previous` being what the last check said."""
    if result is None:
        return CredentialStatus(valid=None, checked_at=at)
    if result.error_class is ErrorClass.AUTH_CONFIG:
        return CredentialStatus(valid=False, checked_at=at, last_error=result.describe())
    if result.error_class in _NO_VERDICT:
        return CredentialStatus(
            valid=None if previous is None else previous.valid,
            checked_at=at,
            last_error=result.describe(),
        )
    return CredentialStatus(valid=True, checked_at=at)


async def check(
    provider: str,
    credentials: ProviderCredentials,
    settings: Mapping[str, ProviderSettings],
    previous: CredentialStatus | None = None,
) -> CredentialStatus:
    """Build `provider` with `credentials` and its block of `settings`, and ask it
    (`Provider.check`, within CHECK_TIMEOUT). Raises nothing for what the provider
    answered, or for credentials it refused to be built with."""
    cls = registry.provider_class(provider)
    at = stored_now()
    try:
        built = cls(credentials, registry.provider_settings(cls, settings))
    except ProviderAuthError as exc:
        return verdict(Result.from_error(exc), previous, at)
    except (PushlineError, OSError) as exc:
        # The deployment's problem (a CA file missing, a library moved), not the app's.
        return verdict(_unchecked(provider, type(exc).__name__, str(exc)), previous, at)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            result = await built.check()
    except TimeoutError:
        result = _unchecked(provider, "Timeout", f"no answer within {CHECK_TIMEOUT:.0f} s")
    finally:
        await built.aclose()
    return verdict(result, previous, at)


def _unchecked(provider: str, reason: str, detail: str) -> Result:
    return Result.failure(provider, ErrorClass.RETRYABLE, reason=reason, detail=detail[:200])


async def check_stored(
    statuses: CredentialStatuses,
    app_id: str,
    provider: str,
    settings: Mapping[str, ProviderSettings],
) -> CredentialStatus | None:
    """Check the app's stored credentials for `provider` and record the verdict; None when
    there is nothing to check (no such credentials, or a sandbox app) or they were replaced
    meanwhile. Raises what the store raises, and SecretUnreadableError when the credentials
    do not decrypt under this process's master key."""
    found = await statuses.credentials(app_id, provider)
    if found is None:
        return None
    status = await check(provider, found.credentials, settings, found.previous)
    if not await statuses.record(app_id, provider, found.sealed, status):
        return None
    if status.valid is False:
        log.warning(
            "the provider refused the app's credentials",
            extra={"app_id": app_id, "provider": provider, "why": status.last_error},
        )
    return status


def uploaded(body: NewApp | AppChanges) -> list[str]:
    """The providers whose credentials an admin body gives; every provider when it takes
    the app out of the sandbox (its own credentials are used from then on)."""
    if "sandbox" in body.model_fields_set and body.sandbox is False:
        return list(registry.names())
    return [
        name
        for name in registry.names()
        if name in body.model_fields_set and getattr(body, name, None) is not None
    ]


async def check_uploaded(apps: Apps, app: App, providers: list[str], settings: Settings) -> App:
    """`app` once its credentials for `providers` (`uploaded`) are checked side by side and
    the verdicts recorded, as the admin API and `pushline admin` answer it. Raises what
    the store raises."""
    if not providers:
        return app
    statuses = CredentialStatuses(apps)
    await asyncio.gather(
        *(
            check_stored(statuses, app.id, provider, settings.provider_settings)
            for provider in providers
        )
    )
    return await apps.get(app.id) or app


def tick(settings: Settings) -> float:
    """Seconds between two runs of a sender's checks: TICK_SECONDS, or the interval when
    shorter."""
    return min(TICK_SECONDS, settings.credentials_check_interval.total_seconds())


class PeriodicChecks:
    """A sender's share of the periodic checks (`holder` names it in the lease): `run`
    checks what is due when this sender holds the lease, then exports every verdict."""

    def __init__(self, apps: Apps, settings: Settings, holder: str) -> None:
        self._statuses = CredentialStatuses(apps)
        self._settings = settings
        self._lease = Lease(apps.db, _LEASE, holder, seconds=LEASE_SECONDS)
        self._exported: set[tuple[str, str]] = set()

    async def run(self) -> int:
        """Check the credentials last checked longer than the interval ago (or never),
        unless another sender holds the lease; then export the verdicts. Returns how many
        were checked. Raises what the store raises (the next run carries on)."""
        checked = 0
        if await self._lease.take():
            try:
                due = await self._statuses.due(
                    stored_now() - self._settings.credentials_check_interval
                )
                for app_id, provider in due:
                    if not await self._lease.take():
                        break
                    try:
                        await check_stored(
                            self._statuses, app_id, provider, self._settings.provider_settings
                        )
                    except (SecretUnreadableError, MasterKeyMissingError):
                        log.warning(
                            "credentials do not open without the master key they were "
                            "sealed with; not checked",
                            extra={"app_id": app_id, "provider": provider},
                        )
                        continue
                    checked += 1
            finally:
                await self._lease.release()
        await self.export()
        return checked

    async def export(self) -> None:
        """Set `pushline_app_credentials_valid` from the verdicts stored now, and drop the
        series of apps and providers that no longer have one."""
        verdicts = await self._statuses.verdicts()
        for gone in self._exported - verdicts.keys():
            metrics.APP_CREDENTIALS_VALID.remove(*gone)
        for (app_id, provider), valid in verdicts.items():
            metrics.APP_CREDENTIALS_VALID.labels(app_id, provider).set(1 if valid else 0)
        self._exported = set(verdicts)
