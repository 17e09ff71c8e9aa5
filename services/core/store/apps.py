"""The `apps` collection: an account's apps, their settings and provider credentials.

Document:
`{_id, account_id, name, package_names, settings: {send_to, verify_on_register}, sandbox,
  providers: {fcm?: {project_id}, apns?: {team_id, key_id, topic, sandbox},
              webpush?: {vapid_public_key, subject}},
  credentials: {fcm?, apns?, webpush?: sealed JSON of the admin API body},
  credentials_status: {fcm?, apns?, webpush?: {valid, checked_at, last_error}}, created, updated}`

`providers` holds what may be shown (`ProviderCredentials.shown()`); `credentials` is
sealed with the master key
(services.core.secrets) and bound to the app and provider, and no API returns it.
`credentials_status` is what the provider last said of them (services.core.store.
credential_status); replacing or removing a provider's credentials forgets it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.credentials import (
    APNSCredentials,
    CredentialStatus,
    FCMCredentials,
    ProviderCredentials,
    WebPushCredentials,
)
from services.core.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from services.core.events import SendTo
from services.core.providers import registry
from services.core.secrets import Vault
from services.core.store.accounts import Name, RecordId, new_id
from services.core.store.client import Document, stored_now

PackageName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^\S+$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AppSettings(_Model):
    """How the pipeline treats the app's devices."""

    send_to: SendTo = "all"
    verify_on_register: bool = False


class FCMConfig(_Model):
    """The shown part of the FCM credentials."""

    project_id: str


class APNSConfig(_Model):
    """The shown part of the APNs credentials."""

    team_id: str
    key_id: str
    topic: str
    sandbox: bool


class WebPushConfig(_Model):
    """The shown part of the Web Push credentials."""

    vapid_public_key: str
    subject: str


class ProviderConfigs(_Model):
    """Which providers the app has credentials for, without the secrets (a provider
    beyond the built-in three is kept as stored)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    fcm: FCMConfig | None = None
    apns: APNSConfig | None = None
    webpush: WebPushConfig | None = None


class App(_Model):
    """An app as every stage sees it; never holds secrets.

    `sandbox` apps deliver to Pushline's built-in provider emulators, whatever their
    credentials (APNs's own sandbox environment is `providers.apns.sandbox`).
    `credentials_status` holds, per provider, what it last said of the app's credentials.
    """

    id: str
    account_id: str
    name: str
    package_names: list[str]
    settings: AppSettings
    sandbox: bool
    providers: ProviderConfigs
    credentials_status: dict[str, CredentialStatus] = {}
    created: datetime
    updated: datetime

    @property
    def configured(self) -> frozenset[str]:
        """The providers the app can deliver through: those it has credentials for, or
        all of them in sandbox (the emulators need none)."""
        if self.sandbox:
            return frozenset(registry.names())
        return frozenset(
            p for p in registry.names() if getattr(self.providers, p, None) is not None
        )


class _CredentialSlots(_Model):
    """A slot per provider for its credentials, under the provider's name: FCM, APNs and
    Web Push as typed fields, any other registered provider's as a field of its own
    `credentials_model`; a name that is neither is refused."""

    # Inputs stay out of validation errors: they hold secrets.
    model_config = ConfigDict(frozen=True, extra="allow", hide_input_in_errors=True)

    @model_validator(mode="after")
    def _other_providers(self) -> Self:
        others = self.__pydantic_extra__ or {}
        problems: list[InitErrorDetails] = []
        for name, value in others.items():
            if name not in registry.names():
                problems.append({"type": "extra_forbidden", "loc": (name,), "input": value})
                continue
            if value is None:
                continue
            try:
                others[name] = registry.provider_class(name).credentials_model.model_validate(value)
            except ValidationError as exc:
                problems.extend(_under(name, exc))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


def _under(name: str, exc: ValidationError) -> list[InitErrorDetails]:
    """`exc`'s errors, located under the field `name`."""
    located: list[InitErrorDetails] = []
    for error in exc.errors():
        detail: InitErrorDetails = {
            "type": error["type"],
            "loc": (name, *error["loc"]),
            "input": error["input"],
        }
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        located.append(detail)
    return located


class NewApp(_CredentialSlots):
    """What creating an app takes (the admin API body)."""

    account_id: str
    id: RecordId | None = None
    name: Name
    package_names: Annotated[list[PackageName], Field(max_length=50)] = []
    settings: AppSettings = AppSettings()
    sandbox: bool = False
    fcm: FCMCredentials | None = None
    apns: APNSCredentials | None = None
    webpush: WebPushCredentials | None = None


class SettingsChanges(_Model):
    """Settings to change; the others keep their values."""

    send_to: SendTo | None = None
    verify_on_register: bool | None = None


class AppChanges(_CredentialSlots):
    """What updating an app takes. An absent field is kept; a provider set to null is
    removed, with its credentials."""

    name: Name | None = None
    package_names: Annotated[list[PackageName], Field(max_length=50)] | None = None
    settings: SettingsChanges | None = None
    sandbox: bool | None = None
    fcm: FCMCredentials | None = None
    apns: APNSCredentials | None = None
    webpush: WebPushCredentials | None = None


class Apps:
    """Repository of apps; seals credentials on the way in and opens them for the sender."""

    def __init__(self, db: AsyncDatabase[Document], vault: Vault) -> None:
        self._apps = db["apps"]
        self._accounts = db["accounts"]
        self._vault = vault

    @property
    def db(self) -> AsyncDatabase[Document]:
        """The database of the apps (for what else is stored on them, such as statuses)."""
        return self._apps.database

    async def create(self, new: NewApp) -> App:
        """Create an app under an existing account.

        Raises NotFoundError (no such account), AlreadyExistsError (id taken),
        InvalidRequestError (a package name another app of the account uses) and
        MasterKeyMissingError (credentials given, but no master key to seal them with).
        """
        if await self._accounts.find_one({"_id": new.account_id}, {"_id": 1}) is None:
            raise NotFoundError(f"account {new.account_id} not found")
        app_id = new.id or new_id()
        await self._check_packages(new.account_id, app_id, new.package_names)
        now = stored_now()
        document: Document = {
            "_id": app_id,
            "account_id": new.account_id,
            "name": new.name,
            "package_names": new.package_names,
            "settings": new.settings.model_dump(),
            "sandbox": new.sandbox,
            "providers": {},
            "credentials": {},
            "created": now,
            "updated": now,
        }
        for provider in registry.names():
            credentials = getattr(new, provider, None)
            if credentials is not None:
                shown, sealed = self._seal(app_id, provider, credentials)
                document["providers"][provider] = shown
                document["credentials"][provider] = sealed
        try:
            await self._apps.insert_one(document)
        except DuplicateKeyError as exc:
            raise AlreadyExistsError(f"app {app_id} already exists") from exc
        return _app(document)

    async def get(self, app_id: str) -> App | None:
        """The app with this id in any account (for workers; the ingest uses `find`)."""
        document = await self._apps.find_one({"_id": app_id}, {"credentials": 0})
        return None if document is None else _app(document)

    async def find(self, account_id: str, app_id: str) -> App | None:
        """The app with this id if the account owns it, else None (as if it did not exist)."""
        document = await self._apps.find_one(
            {"_id": app_id, "account_id": account_id}, {"credentials": 0}
        )
        return None if document is None else _app(document)

    async def find_by_package(self, account_id: str, package_name: str) -> App | None:
        """The account's app that lists `package_name`, or None."""
        document = await self._apps.find_one(
            {"account_id": account_id, "package_names": package_name}, {"credentials": 0}
        )
        return None if document is None else _app(document)

    async def of_account(self, account_id: str, limit: int = 100) -> list[App]:
        """Up to `limit` apps of the account, oldest first."""
        cursor = self._apps.find({"account_id": account_id}, {"credentials": 0})
        return [_app(d) for d in await cursor.sort("created", 1).limit(limit).to_list(None)]

    async def page(self, account_id: str, *, after: str | None, limit: int) -> list[App]:
        """Up to `limit` apps of the account in id order, from the one after the id
        `after`: one page of a listing (an account has few apps)."""
        query: Document = {"account_id": account_id}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self._apps.find(query, {"credentials": 0}).sort("_id", 1).limit(limit)
        return [_app(d) for d in await cursor.to_list(None)]

    async def update(self, app_id: str, changes: AppChanges) -> App:
        """Apply `changes` to the app and return it.

        Raises NotFoundError, InvalidRequestError (package name clash) and
        MasterKeyMissingError (credentials given without a master key).
        """
        current = await self.get(app_id)
        if current is None:
            raise NotFoundError(f"app {app_id} not found")
        given = changes.model_fields_set
        updates: Document = {"updated": stored_now()}
        removals: dict[str, str] = {}
        if changes.name is not None:
            updates["name"] = changes.name
        if changes.package_names is not None:
            await self._check_packages(current.account_id, app_id, changes.package_names)
            updates["package_names"] = changes.package_names
        if changes.settings is not None:
            merged = current.settings.model_copy(
                update=changes.settings.model_dump(exclude_none=True)
            )
            updates["settings"] = merged.model_dump()
        for provider in registry.names():
            if provider not in given:
                continue
            credentials = getattr(changes, provider)
            # What the provider said of the credentials replaced is no longer known.
            removals[f"credentials_status.{provider}"] = ""
            if credentials is None:
                removals[f"providers.{provider}"] = ""
                removals[f"credentials.{provider}"] = ""
            else:
                shown, sealed = self._seal(app_id, provider, credentials)
                updates[f"providers.{provider}"] = shown
                updates[f"credentials.{provider}"] = sealed
        if changes.sandbox is not None:
            updates["sandbox"] = changes.sandbox
        operation: Document = {"$set": updates}
        if removals:
            operation["$unset"] = removals
        document = await self._apps.find_one_and_update(
            {"_id": app_id},
            operation,
            projection={"credentials": 0},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            raise NotFoundError(f"app {app_id} not found")
        return _app(document)

    async def credentials(self, app_id: str, provider: str) -> ProviderCredentials | None:
        """The app's decrypted credentials for `provider` (in its `credentials_model`), or
        None when it has none.

        Raises MasterKeyMissingError without a master key, SecretUnreadableError when
        they were sealed under another key or altered, and ConfigError for a provider that
        is not registered. Never log what this returns.
        """
        opened = await self.sealed_credentials(app_id, provider)
        return None if opened is None else opened[0]

    async def sealed_credentials(
        self, app_id: str, provider: str
    ) -> tuple[ProviderCredentials, str] | None:
        """`credentials()` and the sealed text they were opened from, which names this
        upload of them (each sealing differs); None when the app has none. Raises as
        `credentials()`."""
        document = await self._apps.find_one({"_id": app_id}, {f"credentials.{provider}": 1})
        sealed = None if document is None else document.get("credentials", {}).get(provider)
        if sealed is None:
            return None
        plaintext = self._vault.open(sealed, context=f"{app_id}/{provider}")
        model = registry.provider_class(provider).credentials_model
        return model.model_validate_json(plaintext), sealed

    def _seal(
        self, app_id: str, provider: str, credentials: ProviderCredentials
    ) -> tuple[Document, str]:
        sealed = self._vault.seal(
            credentials.model_dump_json().encode(), context=f"{app_id}/{provider}"
        )
        return credentials.shown(), sealed

    async def _check_packages(self, account_id: str, app_id: str, names: list[str]) -> None:
        # Masiv finds an app by package name within the account, so a name names one app.
        if not names:
            return
        clash = await self._apps.find_one(
            {"account_id": account_id, "package_names": {"$in": names}, "_id": {"$ne": app_id}},
            {"package_names": 1},
        )
        if clash is not None:
            taken = sorted(set(names) & set(clash["package_names"]))
            raise InvalidRequestError(
                f"package name {', '.join(taken)} is already used by app {clash['_id']}"
            )


def _app(document: Document) -> App:
    return App(
        id=document["_id"],
        account_id=document["account_id"],
        name=document["name"],
        package_names=document.get("package_names", []),
        settings=AppSettings.model_validate(document.get("settings", {})),
        sandbox=document.get("sandbox", False),
        providers=ProviderConfigs.model_validate(document.get("providers", {})),
        credentials_status={
            provider: CredentialStatus.model_validate(status)
            for provider, status in (document.get("credentials_status") or {}).items()
        },
        created=document["created"],
        updated=document["updated"],
    )


async def app_settings(db: AsyncDatabase[Document], app_id: str) -> AppSettings:
    """The app's settings (the defaults when there is no such app): one read of them alone,
    for workers that need no more of the app."""
    document = await db.apps.find_one({"_id": app_id}, {"settings": 1})
    return AppSettings.model_validate((document or {}).get("settings") or {})
