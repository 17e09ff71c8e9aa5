"""The apps' `credentials_status` in the real store: which checks are due, a verdict on
credentials replaced meanwhile is dropped, and what the senders export."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core.credentials import CredentialStatus
from services.core.secrets import Vault
from services.core.store.accounts import Accounts
from services.core.store.apps import AppChanges, Apps, NewApp
from services.core.store.client import Document, stored_now
from services.core.store.credential_status import CredentialStatuses
from services.core.store.indexes import ensure_indexes
from tests.unit.providers.keys import vapid_pair

pytestmark = pytest.mark.integration

MASTER_KEY = secrets.token_urlsafe(32)


def webpush() -> dict[str, str]:
    pair = vapid_pair()
    return {
        "vapid_private_key": pair.private,
        "vapid_public_key": pair.public,
        "subject": "mailto:ops@example.com",
    }


async def test_due_checks_records_and_verdicts(db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(db)
    account, _ = await Accounts(db).create("Acme")
    apps = Apps(db, Vault(SecretStr(MASTER_KEY)))
    for app_id, sandbox in (("a-old", False), ("b-new", False), ("c-sandbox", True)):
        await apps.create(
            NewApp(
                account_id=account.id, id=app_id, name=app_id, sandbox=sandbox, webpush=webpush()
            )
        )
    statuses = CredentialStatuses(apps)
    now = stored_now()
    # Never checked: every app outside the sandbox is due.
    assert await statuses.due(now) == [("a-old", "webpush"), ("b-new", "webpush")]
    assert await statuses.credentials("c-sandbox", "webpush") is None

    old = await statuses.credentials("a-old", "webpush")
    assert old is not None
    assert old.previous is None
    earlier = CredentialStatus(valid=False, checked_at=now - timedelta(hours=2), last_error="x")
    assert await statuses.record("a-old", "webpush", old.sealed, earlier)
    new = await statuses.credentials("b-new", "webpush")
    assert new is not None
    assert await statuses.record(
        "b-new", "webpush", new.sealed, CredentialStatus(valid=True, checked_at=now)
    )
    assert await statuses.due(now - timedelta(hours=1)) == [("a-old", "webpush")]
    assert await statuses.verdicts() == {("a-old", "webpush"): False, ("b-new", "webpush"): True}
    again = await statuses.credentials("a-old", "webpush")
    assert again is not None
    assert again.previous == earlier

    # Credentials replaced while a check of the old ones ran: its verdict is not kept, and
    # the new credentials are due at once.
    await apps.update("a-old", AppChanges.model_validate({"webpush": webpush()}))
    late = CredentialStatus(valid=True, checked_at=stored_now())
    assert not await statuses.record("a-old", "webpush", old.sealed, late)
    replaced = await apps.get("a-old")
    assert replaced is not None
    assert replaced.credentials_status == {}
    assert await statuses.due(now - timedelta(hours=1)) == [("a-old", "webpush")]
    assert await statuses.verdicts() == {("b-new", "webpush"): True}
