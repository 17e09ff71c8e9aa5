"""The ingest's short memory of accounts and apps (`PUSHLINE_INGEST_CACHE_SECONDS`): a change
in the store is seen within the bound, and a kept app is only ever its own account's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.settings import Settings
from services.core.store.client import Document
from services.ingest import auth
from services.ingest.app import create_app
from tests.contract.conftest import Tenant, TenantFactory

pytestmark = pytest.mark.integration

# Short enough to wait out in a test, long enough that the store is asked again only after it.
BOUND = 1.0


@asynccontextmanager
async def ingest(settings: Settings, cache_seconds: float) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"ingest_cache_seconds": cache_seconds}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http


async def register(client: httpx.AsyncClient, tenant: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        "/messages/android",
        json={"routeeContactId": "c1", "token": "AndroidToken", "implementationId": app_id},
        headers={"Authorization": f"Bearer {tenant.api_key}"},
    )


@pytest.mark.parametrize(("cache_seconds", "status"), [(60.0, 200), (0.0, 400)])
async def test_a_found_app_is_used_for_the_cache_seconds(
    ingest_settings: Settings,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    cache_seconds: float,
    status: int,
) -> None:
    tenant = await tenants.make()
    async with ingest(ingest_settings, cache_seconds) as client:
        assert (await register(client, tenant, tenant.app.id)).status_code == 200
        await db.apps.delete_one({"_id": tenant.app.id})
        # Kept: the app it found a moment ago; not kept (0): the store says it is gone.
        assert (await register(client, tenant, tenant.app.id)).status_code == status


async def test_a_changed_or_deleted_app_is_seen_within_the_bound(
    ingest_settings: Settings, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    async with ingest(ingest_settings, BOUND) as client:
        assert (await register(client, tenant, tenant.app.id)).status_code == 200
        await db.apps.update_one({"_id": tenant.app.id}, {"$unset": {"providers.fcm": ""}})
        await asyncio.sleep(BOUND)
        changed = await register(client, tenant, tenant.app.id)
        assert changed.status_code == 400
        assert "no provider for android" in changed.text
        await db.apps.delete_one({"_id": tenant.app.id})
        await asyncio.sleep(BOUND)
        deleted = await register(client, tenant, tenant.app.id)
        assert deleted.status_code == 400
        assert "no such implementation" in deleted.text


@pytest.mark.parametrize("cache_seconds", [BOUND, 300.0])
async def test_a_revoked_key_is_refused_within_the_bound(
    ingest_settings: Settings,
    tenants: TenantFactory,
    monkeypatch: pytest.MonkeyPatch,
    cache_seconds: float,
) -> None:
    # However long apps are kept, a key is kept no longer than the revocation bound.
    monkeypatch.setattr(auth, "REVOCATION_SECONDS", BOUND)
    tenant = await tenants.make()
    keys = tenants.accounts.keys
    async with ingest(ingest_settings, cache_seconds) as client:
        assert (await register(client, tenant, tenant.app.id)).status_code == 200
        # A key issued while the account is kept works at once: only found keys are kept.
        _, second = await keys.issue(tenant.account_id)
        again = Tenant(tenant.account_id, second, tenant.app)
        assert (await register(client, again, tenant.app.id)).status_code == 200
        found = await keys.authenticate(tenant.api_key)
        assert found is not None
        await keys.revoke(tenant.account_id, found.id)
        await asyncio.sleep(BOUND)
        assert (await register(client, tenant, tenant.app.id)).status_code == 401
        assert (await register(client, again, tenant.app.id)).status_code == 200


async def test_a_kept_app_is_never_another_accounts(
    ingest_settings: Settings, tenants: TenantFactory
) -> None:
    owner, other = await tenants.make(), await tenants.make()
    async with ingest(ingest_settings, 60.0) as client:
        assert (await register(client, owner, owner.app.id)).status_code == 200
        assert (await register(client, other, other.app.id)).status_code == 200
        # Both apps and both accounts are kept now; each account still finds only its own.
        for caller, app_id in ((other, owner.app.id), (owner, other.app.id)):
            refused = await register(client, caller, app_id)
            assert refused.status_code == 400
            assert "no such implementation" in refused.text
