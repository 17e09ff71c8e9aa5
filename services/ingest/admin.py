"""The admin API, `/admin/v1/...`: accounts, API keys, rate limits (services.ingest.quotas)
and apps with provider credentials.

Served by the admin app alone, on the ingest's admin listener (services/ingest/app.py); the
public listener has no admin path. Bearer `PUSHLINE_ADMIN_TOKEN`, compared in constant time.
Without the setting the routes are not mounted at all (and the ingest starts no admin
listener): every admin path answers 404. Errors are RFC 9457 problem+json.
Provider secrets go in; none ever comes out. Credentials uploaded are checked with their
provider before the answer, which shows the verdict in `credentials_status`
(services.core.credential_checks).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.core import audit
from services.core.credential_checks import check_uploaded, uploaded
from services.core.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    MasterKeyMissingError,
    NotFoundError,
)
from services.core.settings import Settings
from services.core.store.accounts import Account, Name, RecordId
from services.core.store.apps import App, AppChanges, NewApp
from services.core.store.keys import MAX_GRACE_SECONDS, ApiKey, KeyKind, KeyName, key_view
from services.ingest import quotas
from services.ingest.access import origin
from services.ingest.auth import bearer, tenants_of
from services.ingest.bodies import Body, answered, documented, parse
from services.ingest.problems import responses
from services.ingest.refusals import Invalid, Problem, Refusal

log = logging.getLogger(__name__)

_CHECKED = "The app without secrets; `credentials_status` holds the checks of the credentials given"


class NewAccount(Body):
    """`{"name", "id"?}`: the id is generated when not given."""

    name: Name
    id: RecordId | None = None


class NewKey(Body):
    """`{"kind"?, "name"?, "apps"?}`: a secret key (the default) acts for every app; a
    publishable one names the apps it acts for."""

    kind: KeyKind = "secret"
    name: KeyName | None = None
    apps: list[RecordId] = Field(default_factory=list)


class Rotation(Body):
    """`{"grace_seconds"?}`: how long the replaced key keeps working (0, the default:
    revoked at once)."""

    grace_seconds: Annotated[float, Field(ge=0, le=MAX_GRACE_SECONDS)] = 0


class IssuedKey(ApiKey):
    """A key just issued: its fields and, this once, the key itself."""

    api_key: str


class RotatedKey(IssuedKey):
    """The key a rotation issued, and the key it replaced (`revoked_at` when it stops
    working)."""

    replaced: ApiKey


class KeyList(BaseModel):
    """An account's keys, revoked ones too, oldest first; never a key itself."""

    api_keys: list[ApiKey]


def account_view(account: Account, api_key: str) -> dict[str, str]:
    """What creating an account answers: its id, name and first API key."""
    return {"id": account.id, "name": account.name, "api_key": api_key}


def app_view(app: App) -> dict[str, object]:
    """An app as the admin API and CLI show it (it holds no secrets)."""
    return app.model_dump(mode="json")


def _optional(shape: Any) -> dict[str, Any]:
    # A body the route takes without one too.
    extra = documented(shape)
    extra["requestBody"]["required"] = False
    return extra


def routes(settings: Settings) -> APIRouter:
    """The admin router; an empty one (so 404 everywhere) when no admin token is set."""
    router = APIRouter(
        prefix="/admin/v1", tags=["Admin"], responses=responses(400, 401, 404, 409, 500)
    )
    admin_token = settings.admin_token
    if admin_token is None:
        return router
    expected = admin_token.get_secret_value().encode()

    def authorize(request: Request) -> None:
        given = bearer(request)
        if not hmac.compare_digest((given or "").encode(), expected):
            if given:
                audit.record("admin_token_refused", via="admin_api", **origin(request))
            raise Refusal(401, "missing or wrong admin token")

    guarded = [Depends(authorize)]

    @router.post(
        "/accounts",
        status_code=201,
        dependencies=guarded,
        openapi_extra=documented(NewAccount),
    )
    async def create_account(request: Request) -> Response:
        """Create an account; the answer holds its API key, shown this once."""
        body = parse(NewAccount, await request.body())
        try:
            account, api_key = await tenants_of(request).accounts.create(body.name, body.id)
        except AlreadyExistsError as exc:
            raise Refusal(409, str(exc)) from exc
        audit.record("account_created", via="admin_api", account_id=account.id, **origin(request))
        return JSONResponse(account_view(account, api_key), status_code=201)

    @router.post(
        "/accounts/{account_id}/api-keys",
        status_code=201,
        dependencies=guarded,
        openapi_extra=_optional(NewKey),
        responses=answered(IssuedKey, 201, "The key, and the key itself, shown this once"),
    )
    async def issue_key(account_id: str, request: Request) -> Response:
        """Issue an API key for the account (the key itself is shown this once): a secret
        one without a body."""
        raw = await request.body()
        new = parse(NewKey, raw) if raw.strip() else NewKey()
        try:
            key, api_key = await tenants_of(request).keys.issue(
                account_id, kind=new.kind, name=new.name, apps=new.apps
            )
        except NotFoundError as exc:
            raise Refusal(404, str(exc)) from exc
        except InvalidRequestError as exc:
            raise Invalid([Problem("apps", str(exc))]) from exc
        audit.record(
            "api_key_issued",
            via="admin_api",
            account_id=account_id,
            key_id=key.id,
            kind=key.kind,
            apps=list(key.apps),
            **origin(request),
        )
        return JSONResponse(key_view(key, api_key), status_code=201)

    @router.get(
        "/accounts/{account_id}/api-keys",
        dependencies=guarded,
        responses=answered(KeyList, 200, "The account's keys, never a key itself"),
    )
    async def list_keys(account_id: str, request: Request) -> Response:
        """The account's API keys, revoked ones too, oldest first; never a key itself."""
        tenants = tenants_of(request)
        if await tenants.accounts.get(account_id) is None:
            raise Refusal(404, f"account {account_id} not found")
        keys = await tenants.keys.of_account(account_id)
        return JSONResponse({"api_keys": [key_view(key) for key in keys]})

    @router.post(
        "/accounts/{account_id}/api-keys/{key_id}/revoke",
        dependencies=guarded,
        responses=answered(ApiKey, 200, "The key, revoked"),
    )
    async def revoke_key(account_id: str, key_id: str, request: Request) -> Response:
        """Revoke the key at once: every ingest process refuses it within seconds."""
        try:
            key = await tenants_of(request).keys.revoke(account_id, key_id)
        except NotFoundError as exc:
            raise Refusal(404, str(exc)) from exc
        audit.record(
            "api_key_revoked",
            via="admin_api",
            account_id=account_id,
            key_id=key_id,
            **origin(request),
        )
        return JSONResponse(key_view(key))

    @router.post(
        "/accounts/{account_id}/api-keys/{key_id}/rotate",
        status_code=201,
        dependencies=guarded,
        openapi_extra=_optional(Rotation),
        responses=answered(RotatedKey, 201, "The new key, shown this once, and the one replaced"),
    )
    async def rotate_key(account_id: str, key_id: str, request: Request) -> Response:
        """Issue a key of the same kind, name and apps, and revoke this one at once or
        after `grace_seconds`; 409 for a key revoked already."""
        raw = await request.body()
        rotation = parse(Rotation, raw) if raw.strip() else Rotation()
        try:
            new, api_key, old = await tenants_of(request).keys.rotate(
                account_id, key_id, grace_seconds=rotation.grace_seconds
            )
        except NotFoundError as exc:
            raise Refusal(404, str(exc)) from exc
        except AlreadyExistsError as exc:
            raise Refusal(409, str(exc)) from exc
        audit.record(
            "api_key_rotated",
            via="admin_api",
            account_id=account_id,
            key_id=key_id,
            new_key_id=new.id,
            grace_seconds=str(rotation.grace_seconds),
            **origin(request),
        )
        return JSONResponse({**key_view(new, api_key), "replaced": key_view(old)}, status_code=201)

    @router.post(
        "/apps",
        status_code=201,
        dependencies=guarded,
        openapi_extra=documented(NewApp),
        responses=answered(App, 201, _CHECKED),
    )
    async def create_app(request: Request) -> Response:
        """Create an app, with provider credentials sealed at rest and checked with their
        provider before the answer (`credentials_status`)."""
        new = parse(NewApp, await request.body())
        apps = tenants_of(request).apps
        try:
            app = await apps.create(new)
        except NotFoundError as exc:
            raise Invalid([Problem("account_id", str(exc))]) from exc
        except (AlreadyExistsError, InvalidRequestError, MasterKeyMissingError) as exc:
            raise _app_refusal(exc) from exc
        audit.app_created(
            new.model_fields_set,
            via="admin_api",
            account_id=app.account_id,
            app_id=app.id,
            **origin(request),
        )
        return JSONResponse(
            app_view(await check_uploaded(apps, app, uploaded(new), settings)), status_code=201
        )

    @router.get(
        "/apps/{app_id}",
        dependencies=guarded,
        responses=answered(App, 200, "The app without secrets, with `credentials_status`"),
    )
    async def get_app(app_id: str, request: Request) -> Response:
        """The app, without secrets; `credentials_status` says, per provider, whether it
        took the app's credentials when last checked."""
        app = await tenants_of(request).apps.get(app_id)
        if app is None:
            raise Refusal(404, f"app {app_id} not found")
        return JSONResponse(app_view(app))

    @router.patch(
        "/apps/{app_id}",
        dependencies=guarded,
        openapi_extra=documented(AppChanges),
        responses=answered(App, 200, _CHECKED),
    )
    async def update_app(app_id: str, request: Request) -> Response:
        """Change the given fields; a provider set to null is removed. Credentials given
        (all of them, when `sandbox` turns false) are checked before the answer."""
        changes = parse(AppChanges, await request.body())
        apps = tenants_of(request).apps
        try:
            app = await apps.update(app_id, changes)
        except NotFoundError as exc:
            raise Refusal(404, str(exc)) from exc
        except (AlreadyExistsError, InvalidRequestError, MasterKeyMissingError) as exc:
            raise _app_refusal(exc) from exc
        audit.app_changed(
            changes.model_fields_set,
            via="admin_api",
            account_id=app.account_id,
            app_id=app.id,
            **origin(request),
        )
        return JSONResponse(app_view(await check_uploaded(apps, app, uploaded(changes), settings)))

    quotas.add_routes(router, guarded, settings)
    return router


def _app_refusal(exc: AlreadyExistsError | InvalidRequestError | MasterKeyMissingError) -> Refusal:
    """409 for an app that conflicts with what is stored; 500 when the server cannot seal
    provider credentials."""
    if isinstance(exc, MasterKeyMissingError):
        # A set-up problem of the server, not the caller's: say so plainly, to both.
        log.error("provider credentials refused: %s", exc)
        return Refusal(500, str(exc))
    return Refusal(409, str(exc))
