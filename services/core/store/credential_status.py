"""What the providers last said of each app's credentials: `credentials_status` on the app
document (services.core.store.apps), written by the credentials checks
(services.core.credential_checks).

A check reads the credentials with the sealed text they came from, and its status is
written only while the app still holds that very sealing: a check of credentials replaced
meanwhile leaves no status behind. Sandbox apps deliver to the emulators whatever their
credentials, so they are not checked. Apps are few, and both reads here are one scan of
them (the status is not searched for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.core.credentials import CredentialStatus, ProviderCredentials
from services.core.store.apps import Apps

_CHECKED = {"sandbox": {"$ne": True}}
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Checkable:
    """An app's credentials for one provider, the sealed text they were opened from, and
    what the provider said of them last (None: nothing yet). Never log it."""

    credentials: ProviderCredentials
    sealed: str
    previous: CredentialStatus | None


class CredentialStatuses:
    """The `credentials_status` of the apps, and the credentials a check needs."""

    def __init__(self, apps: Apps) -> None:
        self._apps = apps.db["apps"]
        self._repository = apps

    async def due(self, checked_before: datetime) -> list[tuple[str, str]]:
        """(app id, provider) of the credentials of apps outside the sandbox that were never
        checked, or last checked before `checked_before`: oldest first."""
        cursor = self._apps.find(_CHECKED, {"credentials": 1, "credentials_status": 1})
        due: list[tuple[datetime | None, str, str]] = []
        async for document in cursor:
            statuses = document.get("credentials_status") or {}
            for provider in document.get("credentials") or {}:
                status = statuses.get(provider)
                checked_at = None if status is None else status["checked_at"]
                if checked_at is None or checked_at < checked_before:
                    due.append((checked_at, document["_id"], provider))
        # Never checked first, then the longest ago.
        due.sort(key=lambda entry: (entry[0] or _NEVER, entry[1], entry[2]))
        return [(app_id, provider) for _, app_id, provider in due]

    async def credentials(self, app_id: str, provider: str) -> Checkable | None:
        """What a check of the app's credentials for `provider` needs; None when it has
        none, or is a sandbox app. Raises as `Apps.credentials`."""
        app = await self._repository.get(app_id)
        if app is None or app.sandbox:
            return None
        opened = await self._repository.sealed_credentials(app_id, provider)
        if opened is None:
            return None
        credentials, sealed = opened
        return Checkable(credentials, sealed, app.credentials_status.get(provider))

    async def record(
        self, app_id: str, provider: str, sealed: str, status: CredentialStatus
    ) -> bool:
        """Store `status` as what the provider said of the credentials sealed as `sealed`;
        False (nothing stored) when the app no longer holds them."""
        written = await self._apps.update_one(
            {"_id": app_id, f"credentials.{provider}": sealed},
            {"$set": {f"credentials_status.{provider}": status.model_dump()}},
        )
        return written.matched_count == 1

    async def verdicts(self) -> dict[tuple[str, str], bool]:
        """{(app id, provider): valid} of every verdict a provider gave on the credentials
        an app outside the sandbox holds now."""
        cursor = self._apps.find(_CHECKED, {"credentials_status": 1})
        found: dict[tuple[str, str], bool] = {}
        async for document in cursor:
            for provider, status in (document.get("credentials_status") or {}).items():
                if status.get("valid") is not None:
                    found[(document["_id"], provider)] = bool(status["valid"])
        return found
