"""`pushline admin ...` against the real store: the admin API's operations, same results."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core.credentials import APNSCredentials
from services.core.secrets import Vault
from services.core.store.accounts import Accounts
from services.core.store.apps import Apps
from services.core.store.client import Document
from tests.integration import processes
from tests.stack import ROOT

pytestmark = pytest.mark.integration

MASTER_KEY = secrets.token_urlsafe(32)


async def pushline(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "admin",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def p8_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


async def test_cli_manages_accounts_keys_and_apps(
    child_env: dict[str, str], db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    env = {**child_env, "PUSHLINE_MASTER_KEY": MASTER_KEY}
    code, out, err = await pushline(env, "create-account", "--name", "Acme", "--id", "acme")
    assert code == 0, err
    account = json.loads(out)
    assert (account["id"], account["name"]) == ("acme", "Acme")
    accounts = Accounts(db)
    assert (await accounts.keys.authenticate(account["api_key"])) is not None

    code, out, err = await pushline(env, "issue-key", "acme")
    assert code == 0, err
    assert (await accounts.keys.authenticate(json.loads(out)["api_key"])) is not None

    service_account = tmp_path / "sa.json"
    service_account.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "acme-push",
                "client_email": "a@acme-push.iam.gserviceaccount.com",
                "private_key": "FCM-SECRET",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    key_file = tmp_path / "AuthKey.p8"
    key = p8_key()
    key_file.write_text(key)
    webpush = {
        "webpush": {
            "vapid_private_key": "VAPID-SECRET",
            "vapid_public_key": "BPub",
            "subject": "mailto:ops@acme.com",
        }
    }
    code, out, err = await pushline(
        env,
        "create-app",
        "--account-id",
        "acme",
        "--id",
        "acme-app",
        "--name",
        "Acme App",
        "--package-name",
        "com.acme.app",
        "--send-to",
        "latest",
        "--verify-on-register",
        "--fcm-service-account",
        str(service_account),
        "--apns-team-id",
        "ABCDE12345",
        "--apns-key-id",
        "KEY1234567",
        "--apns-topic",
        "com.acme.app",
        "--apns-key-file",
        str(key_file),
        "--apns-sandbox",
        "--json",
        "-",
        stdin=json.dumps(webpush),
    )
    assert code == 0, err
    app = json.loads(out)
    assert app["settings"] == {"send_to": "latest", "verify_on_register": True}
    assert app["providers"]["apns"]["sandbox"] is True
    assert app["providers"]["webpush"]["subject"] == "mailto:ops@acme.com"
    # Checked with each provider before it is printed: neither key can be used.
    status = app["credentials_status"]
    assert (status["fcm"]["valid"], status["webpush"]["valid"]) == (False, False)
    assert status["fcm"]["last_error"].startswith("BadServiceAccount: ")
    assert status["webpush"]["last_error"].startswith("BadVapidKey: ")
    for secret in ("FCM-SECRET", "VAPID-SECRET", key):
        assert secret not in out
        assert secret not in str(await db["apps"].find_one({"_id": "acme-app"}))
    apps = Apps(db, Vault(SecretStr(MASTER_KEY)))
    apns = await apps.credentials("acme-app", "apns")
    assert isinstance(apns, APNSCredentials)
    assert apns.private_key == key

    code, out, err = await pushline(
        env, "update-app", "acme-app", "--no-verify-on-register", "--remove-provider", "webpush"
    )
    assert code == 0, err
    updated = json.loads(out)
    assert updated["settings"]["verify_on_register"] is False
    assert updated["providers"]["webpush"] is None

    code, out, err = await pushline(env, "get-app", "acme-app")
    assert code == 0, err
    assert json.loads(out) == updated


async def test_cli_refusals_exit_1_with_a_reason(
    child_env: dict[str, str], db: AsyncDatabase[Document]
) -> None:
    code, _, err = await pushline(child_env, "get-app", "nope")
    assert (code, err.strip()) == (1, "pushline admin: app nope not found")
    code, _, err = await pushline(child_env, "create-account", "--name", "A", "--id", "a/b")
    assert code == 1
    assert "an id is 1-128 letters" in err
    code, _, err = await pushline(child_env, "issue-key", "nobody")
    assert (code, err.strip()) == (1, "pushline admin: account nobody not found")
    code, _, err = await pushline(child_env, "create-account", "--name", "A", "--id", "a1")
    assert code == 0, err
    code, _, err = await pushline(
        child_env,
        "create-app",
        "--account-id",
        "a1",
        "--name",
        "X",
        "--send-to",
        "latest",
        "--json",
        "-",
        stdin='{"webpush": {"vapid_private_key": "k", "vapid_public_key": "p",'
        ' "subject": "mailto:a@b.co"}}',
    )
    # No PUSHLINE_MASTER_KEY in this environment: credentials are refused, clearly.
    assert code == 1
    assert "PUSHLINE_MASTER_KEY is not set" in err
    assert await db["apps"].count_documents({}) == 0


async def test_cli_sets_and_shows_an_accounts_rate_limits(
    child_env: dict[str, str], db: AsyncDatabase[Document]
) -> None:
    code, _, err = await pushline(child_env, "create-account", "--name", "L", "--id", "limited")
    assert code == 0, err
    code, out, err = await pushline(child_env, "get-limits", "limited")
    assert code == 0, err
    assert set(json.loads(out)["limits"].values()) == {None}
    code, out, err = await pushline(
        child_env,
        "set-limits",
        "limited",
        "--requests-per-second",
        "50",
        "--notifications-per-second",
        "500",
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["limits"]["requests_per_second"] == 50
    assert shown["limits"]["requests_burst"] is None
    assert shown["effective"]["notifications_per_second"] == 500
    # The default burst of calls, 2,000, is what the account gets where it set none.
    assert shown["effective"]["requests_burst"] == 2000
    stored = await db.accounts.find_one({"_id": "limited"})
    assert stored is not None
    assert stored["limits"] == {"requests_per_second": 50, "notifications_per_second": 500}
    assert '"audit": "account_limits_changed"' in err

    code, _, err = await pushline(child_env, "set-limits", "limited", "--requests-burst", "0")
    assert code == 1
    assert "requests_burst" in err
    code, _, err = await pushline(child_env, "get-limits", "nobody")
    assert (code, err.strip()) == (1, "pushline admin: account nobody not found")


async def test_cli_with_the_store_down_says_so_in_one_line(child_env: dict[str, str]) -> None:
    nobody = f"mongodb://ops:hunter2@127.0.0.1:{processes.free_port()}/pushline?authSource=admin"
    code, out, err = await pushline({**child_env, "PUSHLINE_MONGODB_URI": nobody}, "get-app", "a")
    assert (code, out) == (1, "")
    assert err == (
        "pushline admin: the store at PUSHLINE_MONGODB_URI"
        f" ({nobody.replace('hunter2', '***').partition('?')[0]}) does not answer\n"
    )


def audit_lines(err: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if "audit" in line]


async def test_cli_actions_write_audit_lines_without_secrets(
    child_env: dict[str, str], db: AsyncDatabase[Document]
) -> None:
    env = {**child_env, "PUSHLINE_MASTER_KEY": MASTER_KEY}
    code, out, err = await pushline(env, "create-account", "--name", "Audited", "--id", "audited")
    assert code == 0, err
    first_key = json.loads(out)["api_key"]
    assert [(a["audit"], a["via"], a["account_id"]) for a in audit_lines(err)] == [
        ("account_created", "admin_cli", "audited")
    ]
    code, out, err = await pushline(env, "issue-key", "audited")
    assert code == 0, err
    second_key = json.loads(out)["api_key"]
    assert [a["audit"] for a in audit_lines(err)] == ["api_key_issued"]
    webpush = {
        "vapid_private_key": "VAPID-SECRET",
        "vapid_public_key": "BPub",
        "subject": "mailto:ops@example.com",
    }
    body = {"account_id": "audited", "id": "audited-app", "name": "A", "webpush": webpush}
    code, out, err = await pushline(env, "create-app", "--json", "-", stdin=json.dumps(body))
    assert code == 0, err
    [created] = audit_lines(err)
    assert (created["audit"], created["app_id"], created["providers"]) == (
        "app_created",
        "audited-app",
        ["webpush"],
    )
    code, out, err = await pushline(
        env, "update-app", "audited-app", "--remove-provider", "webpush"
    )
    assert code == 0, err
    changed = audit_lines(err)
    assert [(a["audit"], a.get("providers")) for a in changed] == [
        ("app_changed", None),
        ("credentials_changed", ["webpush"]),
    ]
    assert changed[0]["fields"] == ["webpush"]
    for secret in (first_key, second_key, "VAPID-SECRET", MASTER_KEY):
        assert secret not in err


async def test_cli_issues_lists_revokes_and_rotates_keys(
    child_env: dict[str, str], db: AsyncDatabase[Document]
) -> None:
    code, out, err = await pushline(child_env, "create-account", "--name", "Keys", "--id", "keys")
    assert code == 0, err
    first_key = json.loads(out)["api_key"]
    await db.apps.insert_one({"_id": "keys-app", "account_id": "keys", "name": "K"})
    code, out, err = await pushline(
        child_env,
        "issue-key",
        "keys",
        "--kind",
        "publishable",
        "--name",
        "App",
        "--app",
        "keys-app",
    )
    assert code == 0, err
    issued = json.loads(out)
    assert (issued["kind"], issued["name"], issued["apps"]) == ("publishable", "App", ["keys-app"])
    assert [(a["audit"], a["key_id"]) for a in audit_lines(err)] == [
        ("api_key_issued", issued["id"])
    ]
    keys = Accounts(db).keys
    assert await keys.authenticate(issued["api_key"]) is not None

    code, out, err = await pushline(child_env, "list-keys", "keys")
    assert code == 0, err
    listed = json.loads(out)["api_keys"]
    assert [k["kind"] for k in listed] == ["secret", "publishable"]
    assert first_key not in out
    assert issued["api_key"] not in out

    code, out, err = await pushline(
        child_env, "rotate-key", "keys", issued["id"], "--grace-seconds", "3600"
    )
    assert code == 0, err
    rotated = json.loads(out)
    assert (rotated["kind"], rotated["apps"], rotated["replaced"]["id"]) == (
        "publishable",
        ["keys-app"],
        issued["id"],
    )
    # In its grace period, the replaced key still works.
    assert await keys.authenticate(issued["api_key"]) is not None
    assert await keys.authenticate(rotated["api_key"]) is not None
    assert [a["audit"] for a in audit_lines(err)] == ["api_key_rotated"]

    code, out, err = await pushline(child_env, "revoke-key", "keys", issued["id"])
    assert code == 0, err
    assert json.loads(out)["revoked_at"] is not None
    assert await keys.authenticate(issued["api_key"]) is None
    assert [a["audit"] for a in audit_lines(err)] == ["api_key_revoked"]

    for args, reason in [
        (("issue-key", "keys", "--kind", "publishable"), "must name the apps it acts for"),
        (("revoke-key", "keys", "key_none"), "API key key_none not found in account keys"),
        (("rotate-key", "keys", issued["id"]), f"API key {issued['id']} is revoked already"),
        (("list-keys", "nobody"), "account nobody not found"),
    ]:
        code, _, err = await pushline(child_env, *args)
        assert code == 1
        assert reason in err
