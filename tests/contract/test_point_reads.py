"""Every lookup of a contact's devices is a point read: each command on `devices` (and on
the contact directory) filters on `_id` alone, equality or `$in`, the only filters the
local store answers without scanning the collection.

A PyMongo command listener records the commands of the ingest running in-process and of
the resolver's and feedback's functions called against the real store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import (
    Audience,
    CleanupDevices,
    Content,
    DeliveryOutcome,
    Options,
    RegisterDevice,
    RegistrationResolved,
    SendRequest,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.apps import NewApp
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.feedback.deliveries import apply_outcomes
from services.feedback.registrations import apply_registration
from services.resolver.fanout import expand
from services.resolver.registrations import device_cleanups
from tests.contract.conftest import Tenant, TenantFactory, fcm_credentials

pytestmark = pytest.mark.integration

WATCHED = {"devices", "contact_devices", "departing_devices"}
# Where each command keeps its filters.
FILTERS: dict[str, Callable[[Any], list[Document]]] = {
    "find": lambda c: [c.get("filter") or {}],
    "update": lambda c: [u["q"] for u in c["updates"]],
    "delete": lambda c: [d["q"] for d in c["deletes"]],
    "findAndModify": lambda c: [c["query"]],
}


class Recorder(monitoring.CommandListener):
    """The filters of the commands on WATCHED collections of one database, while armed."""

    def __init__(self) -> None:
        self.database: str | None = None
        self.seen: list[tuple[str, str, Document]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name != self.database:
            return
        collection = event.command.get(event.command_name)
        if collection not in WATCHED:
            return
        read = FILTERS.get(event.command_name)
        # Any other command on them (count, aggregate, distinct) is no point read.
        for found in read(event.command) if read else [{"?": event.command_name}]:
            self.seen.append((collection, event.command_name, found))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


_RECORDER = Recorder()
_REGISTERED: list[Recorder] = []


def _point(collection: str, found: Document) -> bool:
    ids = found.get("_id")
    on_id = isinstance(ids, str) or (
        isinstance(ids, dict) and set(ids) == {"$in"} and isinstance(ids["$in"], list)
    )
    if collection == "contact_devices" and set(found) == {"_id", "v"}:
        # An empty entry's guarded delete: equality on the unique (`_id`, `v`) index.
        return isinstance(ids, str)
    return on_id and set(found) == {"_id"}


@pytest.fixture
def recorder(db: AsyncDatabase[Document]) -> Recorder:
    """The listener, registered once per process (for every client made after), armed for
    this test's database."""
    if not _REGISTERED:
        monitoring.register(_RECORDER)
        _REGISTERED.append(_RECORDER)
    _RECORDER.database, _RECORDER.seen = db.name, []
    return _RECORDER


@pytest.fixture
async def watched(recorder: Recorder, settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """The test's database through a client made after the listener was registered."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        yield client.get_default_database()
    finally:
        await client.close()


@pytest.fixture
def ingest(recorder: Recorder, client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The in-process ingest, its store client made after the listener was registered."""
    return client


@pytest.fixture
async def tenant(tenants: TenantFactory, db: AsyncDatabase[Document]) -> Tenant:
    """An account with two apps; each has devices of contacts sharing cellphones and
    emails, registered as feedback stores them."""
    await ensure_indexes(db)
    made = await tenants.make(package_names=["com.example.one"])
    second = await tenants.apps.create(
        NewApp(account_id=made.account_id, name="Second", fcm=fcm_credentials())
    )
    repository = DevicesRepository(db)
    for app_id in (made.app.id, second.id):
        for index in range(6):
            command = registration(
                made,
                app_id,
                f"{app_id}-tok-{index}",
                contact_id=f"contact-{index % 2}",
                cellphone=f"57300{index % 3}",
                email=f"user{index % 3}@example.com",
            )
            await repository.register(command, "fcm", hash_token(command.token))
    return made


def registration(tenant: Tenant, app_id: str, token: str, **values: str) -> RegisterDevice:
    return RegisterDevice.model_validate(
        {
            "request_id": f"req-{token}",
            "account_id": tenant.account_id,
            "app_id": app_id,
            "platform": "android",
            "token": token,
            "source": "masiv",
            **values,
        }
    )


async def recorded(recorder: Recorder, step: Awaitable[object]) -> object:
    """Run `step` and check what it asked of the store: at least one device read, every
    filter on `_id` alone."""
    recorder.seen = []
    result = await step
    assert any(collection == "devices" for collection, _, _ in recorder.seen)
    scans = [seen for seen in recorder.seen if not _point(seen[0], seen[2])]
    assert scans == []
    return result


def send(tenant: Tenant, to: dict[str, Any], *, app_id: str | None = None) -> SendRequest:
    """A send request to `to` (an Audience's fields, and `send_to`)."""
    audience = {k: v for k, v in to.items() if k != "send_to"}
    return SendRequest(
        notification_id="n-1",
        account_id=tenant.account_id,
        app_id=app_id,
        to=Audience.model_validate(audience),
        notification=Content(title="Hola"),
        options=Options(send_to=to.get("send_to")),
    )


async def tokens(request: SendRequest, db: AsyncDatabase[Document]) -> set[str]:
    return {job.token async for job in expand(request, db)}


@pytest.mark.parametrize(
    ("to", "reached"),
    [
        ({"contact_ids": ["contact-1"]}, {1, 3, 5}),
        ({"cellphones": ["573002"]}, {2, 5}),
        ({"emails": ["user0@example.com"]}, {0, 3}),
        ({"contact_ids": ["contact-0"], "send_to": "latest"}, {4}),
    ],
)
async def test_a_send_to_one_contact_cellphone_or_email(
    recorder: Recorder,
    watched: AsyncDatabase[Document],
    tenant: Tenant,
    to: dict[str, Any],
    reached: set[int],
) -> None:
    request = send(tenant, to, app_id=tenant.app.id)
    found = await recorded(recorder, tokens(request, watched))
    assert found == {f"{tenant.app.id}-tok-{i}" for i in reached}


async def test_masiv_account_wide_tokens_and_associations(
    recorder: Recorder, watched: AsyncDatabase[Document], tenant: Tenant
) -> None:
    apps = sorted({tenant.app.id, *[a["_id"] async for a in watched.apps.find({})]})
    raw = [f"{app_id}-tok-0" for app_id in apps]
    request = send(
        tenant, {"tokens": raw, "cellphones": ["573001"], "tokens_from": "account"}, app_id=None
    )
    found = await recorded(recorder, tokens(request, watched))
    assert found == {f"{app_id}-tok-{i}" for app_id in apps for i in (0, 1, 4)}


async def test_reachability(recorder: Recorder, ingest: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await recorded(
        recorder,
        ingest.get(
            f"/v1/apps/{tenant.app.id}/contacts/contact-0",
            headers={"Authorization": f"Bearer {tenant.api_key}"},
        ),
    )
    assert isinstance(response, httpx.Response)
    assert response.json()["platforms"]["android"]["active"] == 3


async def test_masiv_send_to_list_checks_raw_tokens_across_the_accounts_apps(
    recorder: Recorder, ingest: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {
        "tokens": [f"{tenant.app.id}-tok-1", "never-registered"],
        "tokensByAssociation": {"emails": ["user1@example.com"]},
        "notification": {"title": "Hola", "message": "Hola"},
    }
    response = await recorded(
        recorder,
        ingest.post(
            "/v1/notification/sendToList",
            json=body,
            headers={"Authorization": f"Bearer {tenant.api_key}"},
        ),
    )
    assert isinstance(response, httpx.Response)
    # Two apps and an unregistered token: the caller must say which app sends to it.
    assert response.status_code == 400
    assert "several apps" in response.json()["message"]


async def test_an_association_changes_a_device_by_id(
    recorder: Recorder, watched: AsyncDatabase[Document], tenant: Tenant
) -> None:
    command = registration(
        tenant, tenant.app.id, f"{tenant.app.id}-tok-0", cellphone="573009", email="new@x.co"
    )
    verdict = RegistrationResolved(
        command=command, provider="fcm", token_hash=hash_token(command.token), status="Success"
    )
    assert await recorded(recorder, apply_registration(verdict, watched)) is None
    request = send(tenant, {"cellphones": ["573009"]}, app_id=tenant.app.id)
    assert await recorded(recorder, tokens(request, watched)) == {command.token}


async def test_a_cleanup_by_contact(
    recorder: Recorder, watched: AsyncDatabase[Document], tenant: Tenant
) -> None:
    command = CleanupDevices(
        request_id="clean-1",
        account_id=tenant.account_id,
        app_id=tenant.app.id,
        contact_id="contact-1",
    )

    async def applied() -> int:
        repository = DevicesRepository(watched)
        return sum([await repository.clean_up(c) async for c in device_cleanups(command, watched)])

    assert await recorded(recorder, applied()) == 3
    left = {d["token"] async for d in watched.devices.find({"app_id": tenant.app.id})}
    assert left == {f"{tenant.app.id}-tok-{i}" for i in (0, 2, 4)}


async def test_feedback_applies_a_call_s_outcomes_and_an_invalid_token_by_id(
    recorder: Recorder, watched: AsyncDatabase[Document], tenant: Tenant
) -> None:
    app_id = tenant.app.id

    def outcome(index: int, result: str) -> DeliveryOutcome:
        return DeliveryOutcome(
            notification_id="n-1",
            app_id=app_id,
            provider="fcm",
            platform="android",
            token_hash=hash_token(f"{app_id}-tok-{index}"),
            outcome=result,
            reason="UNREGISTERED" if result == "invalid_token" else None,
            accepted_at=utc_now(),
        )

    call = [outcome(0, "success"), outcome(1, "success"), outcome(2, "invalid_token")]
    await recorded(recorder, apply_outcomes(call, watched))
    statuses = {
        d["token"]: (d["status"], "last_success_at" in d)
        async for d in watched.devices.find({"app_id": app_id})
    }
    assert statuses[f"{app_id}-tok-0"] == ("active", True)
    assert statuses[f"{app_id}-tok-2"] == ("invalid", False)
    assert statuses[f"{app_id}-tok-3"] == ("active", False)
