"""The admin API's API keys: issue either kind, list (never a key), revoke, rotate with and
without a grace period; `last_used_at`; audit lines; keys stored in accounts before keys
had kinds become secret keys at start-up."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime, timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document, stored_now
from services.core.store.indexes import ensure_indexes
from services.core.store.keys import ApiKeys
from tests.contract.conftest import ADMIN_TOKEN, TenantFactory
from tests.contract.test_observability import all_text, lines

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FIELDS = {"id", "account_id", "name", "kind", "apps", "created_at", "last_used_at", "revoked_at"}


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def registers(client: httpx.AsyncClient, api_key: str, app_id: str) -> int:
    """The status of a native registration with `api_key` (202 when the key may)."""
    answer = await client.post(
        f"/v1/apps/{app_id}/devices",
        json={"platform": "android", "token": "tok-1"},
        headers=bearer(api_key),
    )
    return answer.status_code


async def test_issue_list_and_revoke(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    base = f"/admin/v1/accounts/{tenant.account_id}/api-keys"
    body = {"kind": "publishable", "name": "iOS app", "apps": [tenant.app.id]}
    issued = await admin.post(base, json=body, headers=ADMIN)
    assert issued.status_code == 201, issued.text
    key = issued.json()
    assert key.keys() == FIELDS | {"api_key"}
    assert key["api_key"].startswith("pl_pk_")
    assert (key["kind"], key["name"], key["apps"]) == ("publishable", "iOS app", [tenant.app.id])
    assert key["last_used_at"] is None
    assert key["revoked_at"] is None
    stored = await db.api_keys.find_one({"_id": key["id"]})
    assert stored is not None
    assert stored["hash"] == hashlib.sha256(key["api_key"].encode()).hexdigest()
    assert key["api_key"] not in str(stored)

    # No body: a secret key, as before keys had kinds.
    plain = await admin.post(base, headers=ADMIN)
    assert plain.status_code == 201
    assert (plain.json()["kind"], plain.json()["apps"]) == ("secret", [])
    assert plain.json()["api_key"].startswith("pl_sk_")

    assert await registers(client, key["api_key"], tenant.app.id) == 202
    listed = await admin.get(base, headers=ADMIN)
    assert listed.status_code == 200
    shown = listed.json()["api_keys"]
    # Oldest first: the account's first key, then the two issued here.
    assert [k["id"] for k in shown[1:]] == [key["id"], plain.json()["id"]]
    assert all(k.keys() == FIELDS for k in shown)
    assert shown[1]["last_used_at"] is not None
    for api_key in (tenant.api_key, key["api_key"], plain.json()["api_key"]):
        assert api_key not in listed.text
    assert hashlib.sha256(key["api_key"].encode()).hexdigest() not in listed.text

    revoked = await admin.post(f"{base}/{key['id']}/revoke", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    # A key in use is kept by the ingest for a few seconds; a fresh ingest asks the store.
    assert await tenants.accounts.keys.authenticate(key["api_key"]) is None
    listed = await admin.get(base, headers=ADMIN)
    assert listed.json()["api_keys"][1]["revoked_at"] == revoked.json()["revoked_at"]
    # Revoking again keeps the first revocation.
    again = await admin.post(f"{base}/{key['id']}/revoke", headers=ADMIN)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_refused_key_requests(admin: httpx.AsyncClient, tenants: TenantFactory) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    base = f"/admin/v1/accounts/{tenant.account_id}/api-keys"
    for body, field in [
        ({"kind": "publishable"}, "apps"),
        ({"kind": "publishable", "apps": [other.app.id]}, "apps"),
        ({"kind": "secret", "apps": [tenant.app.id]}, "apps"),
        ({"kind": "admin"}, "kind"),
        ({"name": ""}, "name"),
    ]:
        refused = await admin.post(base, json=body, headers=ADMIN)
        assert refused.status_code == 400, body
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == field
    for method, path in [
        ("POST", "/admin/v1/accounts/nobody/api-keys"),
        ("GET", "/admin/v1/accounts/nobody/api-keys"),
        ("POST", f"{base}/key_none/revoke"),
        ("POST", f"{base}/key_none/rotate"),
        # Another account's key is not found through this one.
        ("POST", f"/admin/v1/accounts/{other.account_id}/api-keys/key_none/revoke"),
    ]:
        missing = await admin.request(method, path, headers=ADMIN)
        assert missing.status_code == 404, path
    unauthorised = await admin.get(base)
    assert unauthorised.status_code == 401
    bad_grace = await admin.post(
        f"{base}/key_none/rotate", json={"grace_seconds": -1}, headers=ADMIN
    )
    assert bad_grace.status_code == 400


async def test_rotate_at_once_and_with_a_grace_period(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    base = f"/admin/v1/accounts/{tenant.account_id}/api-keys"
    body = {"kind": "publishable", "name": "Android app", "apps": [tenant.app.id]}
    first = (await admin.post(base, json=body, headers=ADMIN)).json()

    rotated = await admin.post(f"{base}/{first['id']}/rotate", headers=ADMIN)
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()
    assert (second["kind"], second["name"], second["apps"]) == (
        "publishable",
        "Android app",
        [tenant.app.id],
    )
    assert second["id"] != first["id"]
    assert second["api_key"] != first["api_key"]
    assert second["replaced"]["id"] == first["id"]
    assert second["replaced"]["revoked_at"] is not None
    assert await registers(client, first["api_key"], tenant.app.id) == 401
    assert await registers(client, second["api_key"], tenant.app.id) == 202
    # A revoked key has a successor already.
    assert (await admin.post(f"{base}/{first['id']}/rotate", headers=ADMIN)).status_code == 409

    # A key the ingest has not seen yet, so that what it keeps is read after the rotation.
    fourth = (await admin.post(base, json=body, headers=ADMIN)).json()
    grace = 1.5
    rotated = await admin.post(
        f"{base}/{fourth['id']}/rotate", json={"grace_seconds": grace}, headers=ADMIN
    )
    assert rotated.status_code == 201
    fifth = rotated.json()
    ends = datetime.fromisoformat(fifth["replaced"]["revoked_at"])
    assert timedelta(seconds=1) < ends - stored_now() <= timedelta(seconds=grace)
    # Both work during the grace period ...
    assert await registers(client, fourth["api_key"], tenant.app.id) == 202
    assert await registers(client, fifth["api_key"], tenant.app.id) == 202
    await asyncio.sleep(grace)
    # ... and the old one is refused once it ends, though the ingest still keeps it.
    assert await registers(client, fourth["api_key"], tenant.app.id) == 401
    assert await registers(client, fifth["api_key"], tenant.app.id) == 202


async def test_last_used_at_is_written_at_most_once_a_minute(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    keys = ApiKeys(db)
    [key] = await keys.of_account(tenant.account_id)
    assert key.last_used_at is None
    assert await registers(client, tenant.api_key, tenant.app.id) == 202
    [used] = await keys.of_account(tenant.account_id)
    assert used.last_used_at is not None
    # Written a minute ago, as another process would have: a use now does not write again.
    recent = used.last_used_at - timedelta(seconds=30)
    await db.api_keys.update_one({"_id": key.id}, {"$set": {"last_used_at": recent}})
    await keys.touch(used)
    [kept] = await keys.of_account(tenant.account_id)
    assert kept.last_used_at == recent
    stale = used.last_used_at - timedelta(seconds=61)
    await db.api_keys.update_one({"_id": key.id}, {"$set": {"last_used_at": stale}})
    await keys.touch(used)
    [touched] = await keys.of_account(tenant.account_id)
    assert touched.last_used_at is not None
    assert touched.last_used_at > stale


async def test_key_actions_write_audit_lines_without_keys(
    admin: httpx.AsyncClient, tenants: TenantFactory, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await tenants.make()
    caplog.set_level(logging.INFO)
    base = f"/admin/v1/accounts/{tenant.account_id}/api-keys"
    body = {"kind": "publishable", "apps": [tenant.app.id]}
    issued = (await admin.post(base, json=body, headers=ADMIN)).json()
    rotated = (
        await admin.post(f"{base}/{issued['id']}/rotate", json={"grace_seconds": 60}, headers=ADMIN)
    ).json()
    await admin.post(f"{base}/{rotated['id']}/revoke", headers=ADMIN)
    audit = lines(caplog, "services.core.audit")
    assert [(a["audit"], a["key_id"]) for a in audit] == [
        ("api_key_issued", issued["id"]),
        ("api_key_rotated", issued["id"]),
        ("api_key_revoked", rotated["id"]),
    ]
    assert (audit[0]["kind"], audit[0]["apps"]) == ("publishable", [tenant.app.id])
    assert (audit[1]["new_key_id"], audit[1]["grace_seconds"]) == (rotated["id"], "60.0")
    assert all(a["account_id"] == tenant.account_id and a["via"] == "admin_api" for a in audit)
    text = all_text(caplog)
    for api_key in (issued["api_key"], rotated["api_key"]):
        assert api_key not in text


async def test_keys_kept_in_their_account_become_secret_keys(
    db: AsyncDatabase[Document],
) -> None:
    # An account as stored before keys had ids and kinds.
    old_key = "pl_" + "k" * 43
    digest = hashlib.sha256(old_key.encode()).hexdigest()
    created = stored_now()
    await db.accounts.insert_one(
        {"_id": "legacy", "name": "Legacy", "api_key_hashes": [digest], "created": created}
    )
    await ensure_indexes(db)
    # Again, as the next process to start does: nothing is moved twice.
    await ensure_indexes(db)
    keys = ApiKeys(db)
    found = await keys.authenticate(old_key)
    assert found is not None
    assert (found.account_id, found.kind, found.apps, found.created_at) == (
        "legacy",
        "secret",
        (),
        created,
    )
    assert [k.id for k in await keys.of_account("legacy")] == [found.id]
    account = await db.accounts.find_one({"_id": "legacy"})
    assert account is not None
    assert "api_key_hashes" not in account
    # A migrated key is revoked and rotated like any other.
    new, api_key, old = await keys.rotate("legacy", found.id)
    assert new.kind == "secret"
    assert old.revoked_at is not None
    assert await keys.authenticate(old_key) is None
    assert await keys.authenticate(api_key) is not None
