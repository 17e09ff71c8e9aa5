"""An app has a credentials slot for every registered provider, a provider added by
configuration too: the admin API takes its credentials, seals them and shows what they
say may be shown."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core.providers import registry
from services.core.secrets import Vault
from services.core.store.apps import Apps
from services.core.store.client import Document
from tests.contract.conftest import MASTER_KEY
from tests.contract.test_admin import ADMIN, new_account
from tests.integration.dummy import DummyCredentials

pytestmark = pytest.mark.integration


@pytest.fixture
def dummy() -> Iterator[None]:
    registry.install({"dummy": "tests.integration.dummy:DummyProvider"})
    try:
        yield
    finally:
        registry.install({})


@pytest.mark.usefixtures("dummy")
async def test_an_added_provider_has_its_credentials_slot(
    admin: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    account = await new_account(admin)
    body = {"account_id": account["id"], "name": "Mi App"}
    created = await admin.post(
        "/admin/v1/apps",
        json={**body, "dummy": {"account": "acme", "secret": "DUMMY-SECRET"}},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    app = created.json()
    assert app["providers"]["dummy"] == {"account": "acme"}
    raw = await db["apps"].find_one({"_id": app["id"]})
    assert raw is not None
    assert "DUMMY-SECRET" not in created.text + str(raw)
    apps = Apps(db, Vault(SecretStr(MASTER_KEY)))
    credentials = await apps.credentials(app["id"], "dummy")
    assert credentials == DummyCredentials(account="acme", secret="DUMMY-SECRET")

    removed = await admin.patch(f"/admin/v1/apps/{app['id']}", json={"dummy": None}, headers=ADMIN)
    assert removed.status_code == 200, removed.text
    assert "dummy" not in removed.json()["providers"]
    assert await apps.credentials(app["id"], "dummy") is None

    refused = await admin.post(
        "/admin/v1/apps", json={**body, "dummy": {"account": "acme"}}, headers=ADMIN
    )
    assert refused.status_code == 400
    assert "dummy.secret" in [e["field"] for e in refused.json()["errors"]]


async def test_a_provider_not_registered_has_no_slot(admin: httpx.AsyncClient) -> None:
    account = await new_account(admin)
    response = await admin.post(
        "/admin/v1/apps",
        json={"account_id": account["id"], "name": "Mi App", "dummy": {"account": "acme"}},
        headers=ADMIN,
    )
    assert response.status_code == 400
    assert "dummy" in [e["field"] for e in response.json()["errors"]]
