"""`pushline sandbox`: a demo account and sandbox app wired to the built-in emulators, and
the inbox of what the emulators received.

`make run` calls `pushline sandbox setup` once every service answers; it prints the app id,
a fresh API key and three commands to try.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import httpx

from services.core.errors import AlreadyExistsError
from services.core.secrets import Vault
from services.core.settings import APNSSandbox, Settings
from services.core.store import client as store
from services.core.store.accounts import Accounts
from services.core.store.apps import Apps, NewApp
from services.sandbox import environment

ACCOUNT_ID = "demo"
PROVIDERS = ("fcm", "apns", "webpush")
APP_ID = "demo-app"


def add_parser(commands: Any) -> None:
    """Add `sandbox setup|inbox` to the `pushline` command."""
    parser = commands.add_parser("sandbox", help="the demo sandbox app and the emulators' inbox")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("setup", help="create the demo app and print an API key and examples")
    inbox = actions.add_parser("inbox", help="what the emulators received, oldest first")
    inbox.add_argument("--provider", choices=PROVIDERS, help="only this emulator's records")
    inbox.add_argument("--limit", type=_positive, help="only the latest N records of each provider")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return number


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Carry out `pushline sandbox ACTION`; return the exit code."""
    if args.action == "setup":
        print(await setup(settings))
        return 0
    try:
        received = await inbox(settings, args.provider, args.limit)
    except FileNotFoundError as exc:
        print(
            f"pushline sandbox: no emulators run ({exc}); start them: pushline emulators",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(received, indent=2))
    return 0


async def setup(settings: Settings) -> str:
    """Create the demo account and its sandbox app if missing, issue an API key, and return
    the instructions to print."""
    mongo = store.connect(settings)
    try:
        db = store.database(mongo)
        accounts = Accounts(db)
        try:
            _, api_key = await accounts.create("Demo", ACCOUNT_ID)
        except AlreadyExistsError:
            _, api_key = await accounts.keys.issue(ACCOUNT_ID, name="sandbox key")
        apps = Apps(db, Vault(settings.master_key))
        # The app of an earlier run stays, with the devices registered to it.
        with contextlib.suppress(AlreadyExistsError):
            await apps.create(
                NewApp(account_id=ACCOUNT_ID, id=APP_ID, name="Demo (sandbox)", sandbox=True)
            )
    finally:
        await mongo.close()
    base = f"http://{settings.ingest_host}:{settings.ingest_port}"
    auth = f"-H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json'"
    return "\n".join(
        [
            "",
            f"Sandbox app: {APP_ID} (account {ACCOUNT_ID}); it delivers to the built-in emulators.",
            f"API key (shown once): {api_key}",
            "",
            "1. Register a device (answers once it is stored, so step 2 reaches it):",
            f"  curl -s {auth} '{base}/v1/apps/{APP_ID}/devices?wait=10' \\",
            '    -d \'{"platform": "android", "token": "demo-device-1", '
            '"contact_id": "demo-user"}\'',
            "2. Send it a notification (prints its id):",
            f"  curl -s {auth} {base}/v1/notifications \\",
            f'    -d \'{{"app_id": "{APP_ID}", "to": {{"contact_ids": ["demo-user"]}}, '
            '"notification": {"title": "Hello", "body": "From Pushline"}}\'',
            "3. Read its state and counters:",
            f"  curl -s {auth} {base}/v1/notifications/ID_FROM_STEP_2",
            "What the emulators received: .venv/bin/pushline sandbox inbox",
        ]
    )


async def inbox(
    settings: Settings, provider: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """What each emulator (or only `provider`'s) recorded, read through its control API;
    with `limit`, only the latest `limit` records of each. Raises FileNotFoundError when
    no emulators run under the state directory."""
    sandbox = environment.read(settings.state_dir)
    emulators = {"fcm": sandbox.fcm, "apns": sandbox.apns, "webpush": sandbox.webpush}
    records = {}
    for name in [provider] if provider else PROVIDERS:
        emulator = emulators[name]
        if emulator is None:
            raise FileNotFoundError(f"no {name} emulator in {environment.path(settings.state_dir)}")
        tls: dict[str, Any] = {}
        if isinstance(emulator, APNSSandbox):
            # The APNs emulator speaks HTTP/2 over TLS only, with its own CA.
            tls = {"http2": True, "verify": str(emulator.ca_file)}
        async with httpx.AsyncClient(timeout=5.0, **tls) as http:
            answer = await http.get(f"{emulator.endpoint}/_emulator/records")
        received = answer.json()["records"]
        records[name] = received[-limit:] if limit else received
    return records
