"""Who is calling: the account an API key authenticates as, what the key may do, and the
apps it may name.

One path for every dialect: `caller` (a Bearer key, or Customer Insights' `ApiToken` in the
body), and the dependencies that refuse a request without a key: `Caller` and `CallerApp`
take a secret key only (401 without a key, 403 for a publishable one), `Registrar` and
`RegistrarApp` either kind, for what a publishable key may do (register devices, clean them
up, report interaction events), and `permit` refuses 403 an app the key does not name.
Tenant isolation lives here: an app is only ever found through the caller's account, so an
app of another account looks exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase

from services.core import audit
from services.core.store.accounts import Account, Accounts
from services.core.store.apps import App, Apps
from services.core.store.client import Document, stored_now
from services.core.store.keys import TOUCH_SECONDS, ApiKey, hash_api_key
from services.core.store.limits import AccountLimits
from services.ingest import access
from services.ingest.cache import TTLCache
from services.ingest.refusals import Refusal
from services.ingest.throttle import throttle_of

# Accounts and apps the lookup cache holds at most, each.
_CACHED = 10_000
# The longest a found key is used without asking the store again, whatever
# PUSHLINE_INGEST_CACHE_SECONDS says: a key revoked is refused by every ingest process at
# most this many seconds later.
REVOCATION_SECONDS = 5.0

PUBLISHABLE_REFUSED = (
    "a publishable key may only register devices, clean them up and report interaction "
    "events: use a secret key"
)


@dataclass(frozen=True)
class KeyHolder:
    """A caller with a valid key: its account, and the key (its kind and apps)."""

    account: Account
    key: ApiKey


class Tenants:
    """Accounts and apps as the ingest finds them, each kept `cache_seconds` once found."""

    def __init__(self, db: AsyncDatabase[Document], apps: Apps, *, cache_seconds: float) -> None:
        """`cache_seconds`: how long a found account or app is used without asking the
        store again (0: ask every time); a key, `REVOCATION_SECONDS` at most."""
        self.accounts = Accounts(db)
        self.keys = self.accounts.keys
        self.limits = AccountLimits(db)
        self.apps = apps
        # Keyed by the key's digest, never the key itself. An app is keyed by the account
        # that found it as well as its id, so it is only ever returned to that account.
        self._known_keys: TTLCache[str, KeyHolder] = TTLCache(
            min(cache_seconds, REVOCATION_SECONDS), _CACHED
        )
        self._known_apps: TTLCache[tuple[str, str], App] = TTLCache(cache_seconds, _CACHED)
        # Keys whose use this process noted in the store lately.
        self._touched: TTLCache[str, bool] = TTLCache(TOUCH_SECONDS, _CACHED)

    async def holder(self, api_key: str | None) -> KeyHolder | None:
        """The account and key of an API key; None when the key is absent, unknown or
        revoked. A key revoked is refused within `REVOCATION_SECONDS`."""
        if not api_key:
            return None
        digest = hash_api_key(api_key)
        holder = self._known_keys.get(digest)
        if holder is None:
            key = await self.keys.authenticate(api_key)
            account = None if key is None else await self.accounts.get(key.account_id)
            if key is None or account is None:
                return None
            holder = KeyHolder(account, key)
            self._known_keys.put(digest, holder)
        elif holder.key.revoked(stored_now()):
            # A rotated key's grace period ended while it was cached.
            return None
        if self._touched.get(holder.key.id) is None:
            await self.keys.touch(holder.key)
            self._touched.put(holder.key.id, True)
        return holder

    async def app(self, account: Account, app_id: str) -> App | None:
        """The account's app with this id; None also when another account owns it. A
        changed or deleted app is seen as such within the cache's seconds."""
        key = (account.id, app_id)
        app = self._known_apps.get(key)
        if app is None:
            app = await self.apps.find(account.id, app_id)
            if app is not None:
                self._known_apps.put(key, app)
        return app


def tenants_of(request: Request) -> Tenants:
    """The Tenants the ingest's lifespan built."""
    found = request.app.state.tenants
    assert isinstance(found, Tenants)
    return found


def bearer(request: Request) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, or None."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


async def caller(
    request: Request, api_key: str | None, *, org_id: str | None = None
) -> KeyHolder | None:
    """The account and key an API key authenticates as (given `org_id`, only that
    account's), or None. Raises Refusal (429) when the account's request rate limit is
    reached.

    The account's id goes to the request's access line; a key given but refused goes to the
    audit log (a missing key is in the access log only).
    """
    holder = await tenants_of(request).holder(api_key)
    if holder is not None and org_id is not None and holder.account.id != org_id:
        holder = None
    if holder is not None:
        access.identify(request, holder.account.id)
        await throttle_of(request).request(request, holder.account.id)
    elif api_key:
        audit.record("api_key_refused", via="api", org_id=org_id, **access.origin(request))
    return holder


def permit(holder: KeyHolder, app_id: str | None) -> None:
    """Refuse (403) an app the caller's key does not act for (None: no one app)."""
    if not holder.key.permits(app_id):
        raise Refusal(403, f"this publishable key does not act for app {app_id}")


async def _authenticated(request: Request) -> KeyHolder:
    holder = await caller(request, bearer(request))
    if holder is None:
        raise Refusal(401, "missing or unknown API key")
    return holder


async def _secret(request: Request) -> Account:
    holder = await _authenticated(request)
    if holder.key.kind != "secret":
        raise Refusal(403, PUBLISHABLE_REFUSED)
    return holder.account


# The account of the request's Bearer key, a secret one; 401 without one, 403 for a
# publishable key.
Caller = Annotated[Account, Depends(_secret)]
# The account and key of the request's Bearer key, of either kind; 401 without one. The
# route checks each app it acts for with `permit`.
Registrar = Annotated[KeyHolder, Depends(_authenticated)]


async def _app_of(holder: KeyHolder, app_id: str, request: Request) -> App:
    app = await tenants_of(request).app(holder.account, app_id)
    if app is None:
        raise Refusal(404, f"app {app_id} not found")
    return app


async def _callers_app(app_id: str, request: Request) -> App:
    # The account found here, not through `Caller`: a dependency of a dependency costs
    # the register path's every request another resolution.
    holder = await _authenticated(request)
    if holder.key.kind != "secret":
        raise Refusal(403, PUBLISHABLE_REFUSED)
    return await _app_of(holder, app_id, request)


async def _registrars_app(app_id: str, request: Request) -> App:
    holder = await _authenticated(request)
    app = await _app_of(holder, app_id, request)
    permit(holder, app.id)
    return app


# The caller's app the path's `{app_id}` names, for a secret key; 401 without a key, 403
# for a publishable one, 404 for no such app.
CallerApp = Annotated[App, Depends(_callers_app)]
# The same for either kind of key: 403 for an app a publishable key does not name.
RegistrarApp = Annotated[App, Depends(_registrars_app)]
