"""Who is calling: the account an API key authenticates as, and the apps it may name.

One path for every dialect: `caller` (a Bearer key, or Customer Insights' `ApiToken` in the
body), and the `Caller` and `CallerApp` dependencies that refuse a request without them.
Tenant isolation lives here: an app is only ever found through the caller's account, so an
app of another account looks exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase

from services.core import audit
from services.core.store.accounts import Account, Accounts, hash_api_key
from services.core.store.apps import App, Apps
from services.core.store.client import Document
from services.core.store.limits import AccountLimits
from services.ingest import access
from services.ingest.cache import TTLCache
from services.ingest.refusals import Refusal
from services.ingest.throttle import throttle_of

# Accounts and apps the lookup cache holds at most, each.
_CACHED = 10_000


class Tenants:
    """Accounts and apps as the ingest finds them, each kept `cache_seconds` once found."""

    def __init__(self, db: AsyncDatabase[Document], apps: Apps, *, cache_seconds: float) -> None:
        """`cache_seconds`: how long a found account or app is used without asking the
        store again (0: ask every time)."""
        self.accounts = Accounts(db)
        self.limits = AccountLimits(db)
        self.apps = apps
        # Keyed by the key's digest, never the key itself. An app is keyed by the account
        # that found it as well as its id, so it is only ever returned to that account.
        self._known_keys: TTLCache[str, Account] = TTLCache(cache_seconds, _CACHED)
        self._known_apps: TTLCache[tuple[str, str], App] = TTLCache(cache_seconds, _CACHED)

    async def account(self, api_key: str | None) -> Account | None:
        """The account of an API key; None when the key is absent or unknown. A key removed
        from its account is refused within the cache's seconds."""
        if not api_key:
            return None
        digest = hash_api_key(api_key)
        account = self._known_keys.get(digest)
        if account is None:
            account = await self.accounts.authenticate(api_key)
            if account is not None:
                self._known_keys.put(digest, account)
        return account

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
) -> Account | None:
    """The account an API key authenticates as (given `org_id`, only that account), or None.
    Raises Refusal (429) when the account's request rate limit is reached.

    The account's id goes to the request's access line; a key given but refused goes to the
    audit log (a missing key is in the access log only).
    """
    account = await tenants_of(request).account(api_key)
    if account is not None and org_id is not None and account.id != org_id:
        account = None
    if account is not None:
        access.identify(request, account.id)
        await throttle_of(request).request(request, account.id)
    elif api_key:
        audit.record("api_key_refused", via="api", org_id=org_id, **access.origin(request))
    return account


async def _authenticated(request: Request) -> Account:
    account = await caller(request, bearer(request))
    if account is None:
        raise Refusal(401, "missing or unknown API key")
    return account


# The account of the request's Bearer key; 401 without one.
Caller = Annotated[Account, Depends(_authenticated)]


async def _callers_app(app_id: str, request: Request) -> App:
    # The account found here, not through `Caller`: a dependency of a dependency costs
    # the register path's every request another resolution.
    account = await _authenticated(request)
    app = await tenants_of(request).app(account, app_id)
    if app is None:
        raise Refusal(404, f"app {app_id} not found")
    return app


# The caller's app the path's `{app_id}` names; 401 without a key, 404 for no such app.
CallerApp = Annotated[App, Depends(_callers_app)]
