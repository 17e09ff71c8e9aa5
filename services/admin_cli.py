"""`pushline admin ...`: the admin API's operations, straight against the store.

Each command prints JSON on stdout (the same objects the admin API answers) and exits 0;
a refused operation prints `pushline admin: <why>` on stderr and exits 1. Creating or
changing provider credentials needs PUSHLINE_MASTER_KEY, the same one the services use;
credentials given are checked with their provider before the app is printed, as the admin
API does (services.core.credential_checks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from services.core import audit
from services.core.credential_checks import check_uploaded, uploaded
from services.core.errors import PushlineError
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store import client as store
from services.core.store.accounts import Accounts
from services.core.store.apps import App, AppChanges, Apps, NewApp
from services.core.store.client import Document
from services.core.store.indexes import ensure_indexes
from services.core.store.keys import MAX_GRACE_SECONDS, key_view
from services.core.store.limits import AccountLimits, Limits, view

COMMANDS = (
    "create-account",
    "issue-key",
    "list-keys",
    "revoke-key",
    "rotate-key",
    "get-limits",
    "set-limits",
    "create-app",
    "get-app",
    "update-app",
)
# `set-limits` options: each a field of an account's limits (services.core.store.limits).
_LIMITS = (
    "requests_per_second",
    "requests_burst",
    "app_sends_per_second",
    "app_sends_burst",
    "notifications_per_second",
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `admin` and its subcommands to the `pushline` parser."""
    admin = commands.add_parser("admin", help="manage accounts, API keys and apps")
    actions = admin.add_subparsers(dest="action", required=True)

    account = actions.add_parser("create-account", help="create an account; prints its API key")
    account.add_argument("--name", required=True)
    account.add_argument("--id", help="the account id (default: generated)")

    key = actions.add_parser("issue-key", help="issue an API key for an account; prints it once")
    key.add_argument("account_id")
    key.add_argument("--kind", choices=("secret", "publishable"), default="secret")
    key.add_argument("--name")
    key.add_argument(
        "--app",
        action="append",
        default=[],
        dest="apps",
        metavar="APP_ID",
        help="an app a publishable key acts for (repeatable)",
    )

    listed = actions.add_parser("list-keys", help="list an account's API keys (never the keys)")
    listed.add_argument("account_id")

    revoke = actions.add_parser("revoke-key", help="revoke an API key at once")
    revoke.add_argument("account_id")
    revoke.add_argument("key_id")

    rotate = actions.add_parser(
        "rotate-key", help="replace an API key with a new one of the same kind, name and apps"
    )
    rotate.add_argument("account_id")
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--grace-seconds",
        type=float,
        default=0.0,
        help="how long the replaced key keeps working (default: revoked at once)",
    )

    shown = actions.add_parser("get-limits", help="show an account's rate limits")
    shown.add_argument("account_id")

    limits = actions.add_parser(
        "set-limits", help="replace an account's rate limits (an option left out: the default)"
    )
    limits.add_argument("account_id")
    for name in _LIMITS:
        limits.add_argument("--" + name.replace("_", "-"), type=float)

    create = actions.add_parser("create-app", help="create an app")
    create.add_argument("--account-id")
    create.add_argument("--id", help="the app id (default: generated)")
    _app_options(create)

    get = actions.add_parser("get-app", help="show an app (never its secrets)")
    get.add_argument("app_id")

    update = actions.add_parser("update-app", help="change an app")
    update.add_argument("app_id")
    _app_options(update)
    update.add_argument(
        "--remove-provider",
        action="append",
        default=[],
        metavar="PROVIDER",
        help="remove a provider (fcm, apns, webpush, ...) and its credentials (repeatable)",
    )


def _app_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="a body as the admin API takes it ('-' for stdin); the options below override it",
    )
    parser.add_argument("--name")
    parser.add_argument("--package-name", action="append", dest="package_names", help="repeatable")
    parser.add_argument("--send-to", choices=("all", "latest"))
    parser.add_argument("--verify-on-register", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--sandbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deliver to the built-in provider emulators",
    )
    parser.add_argument(
        "--fcm-service-account", metavar="FILE", help="the service-account JSON from Google"
    )
    parser.add_argument("--apns-team-id")
    parser.add_argument("--apns-key-id")
    parser.add_argument("--apns-topic")
    parser.add_argument("--apns-key-file", metavar="FILE", help="the .p8 key")
    parser.add_argument("--apns-sandbox", action=argparse.BooleanOptionalAction, default=None)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Carry out one admin command; return the exit code."""
    mongo = store.connect(settings)
    db = store.database(mongo)
    try:
        await ensure_indexes(db)
        apps = Apps(db, Vault(settings.master_key))
        result = await _dispatch(args, db, apps, settings)
    except ConnectionFailure:
        print(f"pushline admin: {store.unanswered(settings)}", file=sys.stderr)
        return 1
    except (PushlineError, ValueError, OSError) as exc:
        print(f"pushline admin: {_reason(exc)}", file=sys.stderr)
        return 1
    finally:
        await mongo.close()
    print(json.dumps(result, indent=2, default=str))
    return 0


async def _dispatch(
    args: argparse.Namespace, db: AsyncDatabase[Document], apps: Apps, settings: Settings
) -> object:
    accounts = Accounts(db)
    if args.action == "create-account":
        account, api_key = await accounts.create(args.name, args.id)
        audit.record("account_created", via="admin_cli", account_id=account.id)
        return {"id": account.id, "name": account.name, "api_key": api_key}
    if args.action in ("issue-key", "list-keys", "revoke-key", "rotate-key"):
        return await _keys(args, accounts)
    if args.action in ("get-limits", "set-limits"):
        return await _limits(args, AccountLimits(db), settings)
    if args.action == "create-app":
        body = _body(args)
        for name in ("account_id", "id"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
        new = NewApp.model_validate(body)
        app = await apps.create(new)
        audit.app_created(
            new.model_fields_set, via="admin_cli", account_id=app.account_id, app_id=app.id
        )
        return _shown(await check_uploaded(apps, app, uploaded(new), settings))
    if args.action == "get-app":
        found = await apps.get(args.app_id)
        if found is None:
            raise ValueError(f"app {args.app_id} not found")
        return _shown(found)
    body = _body(args)
    for provider in args.remove_provider:
        body[provider] = None
    changes = AppChanges.model_validate(body)
    app = await apps.update(args.app_id, changes)
    audit.app_changed(
        changes.model_fields_set, via="admin_cli", account_id=app.account_id, app_id=app.id
    )
    return _shown(await check_uploaded(apps, app, uploaded(changes), settings))


async def _keys(args: argparse.Namespace, accounts: Accounts) -> object:
    keys, account_id = accounts.keys, args.account_id
    if args.action == "issue-key":
        key, api_key = await keys.issue(account_id, kind=args.kind, name=args.name, apps=args.apps)
        audit.record(
            "api_key_issued",
            via="admin_cli",
            account_id=account_id,
            key_id=key.id,
            kind=key.kind,
            apps=list(key.apps),
        )
        return key_view(key, api_key)
    if args.action == "list-keys":
        if await accounts.get(account_id) is None:
            raise ValueError(f"account {account_id} not found")
        return {"api_keys": [key_view(key) for key in await keys.of_account(account_id)]}
    if args.action == "revoke-key":
        key = await keys.revoke(account_id, args.key_id)
        audit.record("api_key_revoked", via="admin_cli", account_id=account_id, key_id=key.id)
        return key_view(key)
    if not 0 <= args.grace_seconds <= MAX_GRACE_SECONDS:
        raise ValueError(f"--grace-seconds must be from 0 to {MAX_GRACE_SECONDS}")
    new, api_key, old = await keys.rotate(account_id, args.key_id, grace_seconds=args.grace_seconds)
    audit.record(
        "api_key_rotated",
        via="admin_cli",
        account_id=account_id,
        key_id=old.id,
        new_key_id=new.id,
        grace_seconds=str(args.grace_seconds),
    )
    return {**key_view(new, api_key), "replaced": key_view(old)}


async def _limits(
    args: argparse.Namespace, limits: AccountLimits, settings: Settings
) -> dict[str, object]:
    if args.action == "set-limits":
        given = {name: getattr(args, name) for name in _LIMITS}
        await limits.set(args.account_id, Limits.model_validate(given))
        audit.record("account_limits_changed", via="admin_cli", account_id=args.account_id)
    found = await limits.get(args.account_id)
    if found is None:
        raise ValueError(f"account {args.account_id} not found")
    return view(args.account_id, found, settings)


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.json is not None:
        text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("--json must hold a JSON object")
        body.update(loaded)
    for name in ("name", "package_names", "sandbox"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    settings = dict(body.get("settings") or {})
    if args.send_to is not None:
        settings["send_to"] = args.send_to
    if args.verify_on_register is not None:
        settings["verify_on_register"] = args.verify_on_register
    if settings:
        body["settings"] = settings
    if args.fcm_service_account is not None:
        service_account = json.loads(Path(args.fcm_service_account).read_text())
        body["fcm"] = {"service_account": service_account}
    apns = {
        "team_id": args.apns_team_id,
        "key_id": args.apns_key_id,
        "topic": args.apns_topic,
        "private_key": Path(args.apns_key_file).read_text() if args.apns_key_file else None,
        "sandbox": args.apns_sandbox,
    }
    if any(value is not None for value in apns.values()):
        given = {k: v for k, v in apns.items() if v is not None}
        body["apns"] = {**(body.get("apns") or {}), **given}
    return body


def _shown(app: App) -> dict[str, object]:
    return app.model_dump(mode="json")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
    return str(exc)
