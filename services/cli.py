"""The `pushline` command: one subcommand per service, plus operations."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from services.core import logging as logs
from services.core.errors import ConfigError, UnavailableError
from services.core.kafka import ensure_topics
from services.core.settings import Settings, load_settings

SERVICES = ("ingest", "resolver", "sender", "feedback")


def _run_service(name: str, settings: Settings) -> None:
    # Imported by name so that each process loads only its own service.
    entry = importlib.import_module(f"services.{name}.__main__")
    entry.run(settings)


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; return the process exit code (2 for a configuration error)."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"pushline: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, f"pushline-{args.command}")
    if args.command in (*SERVICES, "emulators"):
        _run_service(args.command, settings)
    elif args.command == "topics":
        try:
            created = asyncio.run(ensure_topics(settings))
        except UnavailableError as exc:
            print(f"pushline: {exc}", file=sys.stderr)
            return 1
        print("created: " + (", ".join(created) or "none (all present)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
