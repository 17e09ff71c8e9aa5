"""The `pushline` command: one subcommand per service, plus operations."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka.errors import KafkaError
from pymongo.errors import ConnectionFailure

from services import admin_cli
from services.core import logging as logs
from services.core import process
from services.core.deadletters import LetterFilter, describe, listed, replay
from services.core.errors import UnavailableError
from services.core.kafka import ensure_topics
from services.core.settings import Settings
from services.core.store import client as store
from services.core.store.replays import Replays
from services.sandbox import command as sandbox

SERVICES = ("ingest", "resolver", "sender", "feedback")
# The processes `pushline NAME` runs, by the module of each one's entry point: the four
# services and the sandbox's emulators (the test rig, which no service imports).
_PROCESSES = {
    **{name: f"services.{name}.__main__" for name in SERVICES},
    "emulators": "services.sandbox.emulators.__main__",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in SERVICES:
        commands.add_parser(name, help=f"run the {name} service")
    commands.add_parser(
        "emulators", help="run the FCM, APNs and Web Push emulators (tests and the sandbox)"
    )
    commands.add_parser("topics", help="create the Kafka topics that are missing")
    commands.add_parser("check-config", help="validate the PUSHLINE_* environment and exit")
    dlq = commands.add_parser("dlq", help="list or replay dead-lettered messages")
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("--app", help="only this app's letters")
    dlq.add_argument("--reason", help="only letters with this provider reason code")
    dlq.add_argument("--since", type=_timestamp, help="only letters from this time (ISO 8601)")
    dlq.add_argument("--until", type=_timestamp, help="only letters before this time")
    admin_cli.add_parser(commands)
    sandbox.add_parser(commands)
    return parser


def _timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _dlq(settings: Settings, args: argparse.Namespace) -> None:
    which = LetterFilter(app_id=args.app, reason=args.reason, since=args.since, until=args.until)
    mongo = store.connect(settings)
    replays = Replays(store.database(mongo))
    try:
        if args.action == "replay":
            print(f"replayed: {await replay(settings, which, replays)}")
            return
        async for parked, replayed in listed(settings, which, replays):
            print(json.dumps(describe(parked, replayed)))
    finally:
        await mongo.close()


def _log_level(settings: Settings) -> str:
    if settings.log_level != "INFO":
        return settings.log_level
    # An operator command prints its result; the libraries' INFO lines (aiokafka's
    # subscriptions, httpx's requests) would only bury it. DEBUG still shows everything.
    return "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; return the process exit code (2 for a configuration error)."""
    args = _parser().parse_args(argv)
    if args.command in _PROCESSES:
        # Imported by name so that each process loads only its own service.
        entry = importlib.import_module(_PROCESSES[args.command])
        return process.start(args.command, entry.run)
    settings = process.settings()
    if settings is None:
        return 2
    logs.configure(_log_level(settings), f"pushline-{args.command}")
    if args.command == "topics":
        try:
            created = asyncio.run(ensure_topics(settings))
        except UnavailableError as exc:
            print(f"pushline: {exc}", file=sys.stderr)
            return 1
        print("created: " + (", ".join(created) or "none (all present)"))
    elif args.command == "check-config":
        print("pushline: the configuration is valid")
    elif args.command == "dlq":
        try:
            asyncio.run(_dlq(settings, args))
        except KafkaError as exc:
            print(f"pushline: Kafka did not answer: {exc}", file=sys.stderr)
            return 1
        except ConnectionFailure:
            print(f"pushline: {store.unanswered(settings)}", file=sys.stderr)
            return 1
    elif args.command == "admin":
        return asyncio.run(admin_cli.run(args, settings))
    elif args.command == "sandbox":
        return asyncio.run(sandbox.run(args, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
