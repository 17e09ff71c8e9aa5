"""A key revoked through the admin API is refused by every ingest process within the
documented bound (`services.ingest.auth.REVOCATION_SECONDS`), however long the ingests keep
what they found (`PUSHLINE_INGEST_CACHE_SECONDS` at its maximum here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.ingest.auth import REVOCATION_SECONDS
from tests.contract.conftest import ADMIN_TOKEN, MASTER_KEY, TenantFactory
from tests.integration import processes

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Time for the ingest to answer a request, on a machine shared with other work.
SLACK = 1.5


@pytest.fixture
async def ingests(child_env: dict[str, str]) -> AsyncIterator[tuple[str, list[str]]]:
    """Two `pushline ingest` processes keeping what they find for 300 s; the admin
    listener's URL (of the first) and both public URLs."""
    started: list[processes.Process] = []
    urls: list[str] = []
    admin_port = processes.free_port()
    try:
        for number in range(2):
            port = processes.free_port()
            env = {
                **child_env,
                "PUSHLINE_INGEST_PORT": str(port),
                "PUSHLINE_MASTER_KEY": MASTER_KEY,
                "PUSHLINE_INGEST_CACHE_SECONDS": "300",
            }
            if number == 0:
                env |= {"PUSHLINE_ADMIN_TOKEN": ADMIN_TOKEN, "PUSHLINE_ADMIN_PORT": str(admin_port)}
            process = processes.Process(["services.cli", "ingest"], env)
            started.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            await process.wait_ready(f"{urls[-1]}/readyz")
        yield f"http://127.0.0.1:{admin_port}", urls
    finally:
        for process in started:
            process.close()


async def registers(client: httpx.AsyncClient, url: str, api_key: str, app_id: str) -> int:
    answer = await client.post(
        f"{url}/messages/android",
        json={"routeeContactId": "c1", "token": "tok-1", "implementationId": app_id},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    return answer.status_code


@pytest.mark.parametrize("kind", ["secret", "publishable"])
async def test_a_revoked_key_is_refused_by_every_ingest_within_the_bound(
    ingests: tuple[str, list[str]], db: AsyncDatabase[Document], kind: str
) -> None:
    admin_url, urls = ingests
    tenant = await TenantFactory(db).make()
    base = f"{admin_url}/admin/v1/accounts/{tenant.account_id}/api-keys"
    async with httpx.AsyncClient(timeout=10.0) as client:
        body = {"kind": kind, "apps": [tenant.app.id] if kind == "publishable" else []}
        issued = await client.post(base, json=body, headers=ADMIN)
        assert issued.status_code == 201, issued.text
        key = issued.json()
        # Each ingest has found the key, and keeps it.
        for url in urls:
            assert await registers(client, url, key["api_key"], tenant.app.id) == 200
        revoked = await client.post(f"{base}/{key['id']}/revoke", headers=ADMIN)
        assert revoked.status_code == 200
        since = time.monotonic()
        refused_after: dict[str, float] = {}
        while len(refused_after) < len(urls) and time.monotonic() - since < 3 * REVOCATION_SECONDS:
            for url in urls:
                status = await registers(client, url, key["api_key"], tenant.app.id)
                if url not in refused_after and status == 401:
                    refused_after[url] = time.monotonic() - since
                # Never accepted again once refused.
                assert url not in refused_after or status == 401
            await asyncio.sleep(0.2)
        assert refused_after.keys() == set(urls)
        assert max(refused_after.values()) <= REVOCATION_SECONDS + SLACK
        # The account's other key still works everywhere.
        for url in urls:
            assert await registers(client, url, tenant.api_key, tenant.app.id) == 200
