"""`python -m bench all|register|fanout|deliver|baseline|emulators|campaign [--quick] [options]`.

Needs the local stack (`deploy/local/stack.sh up`, or `make bench`). Each measured run gets
a namespace and database of its own; each scenario writes `bench/results/<date>-<scenario>`
`.json`, `.md` and `.png`. `baseline` also runs `deliver`, for their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baseline, campaign, deliver, fanout, register, report
from bench.campaign import DEFAULT_MIX, Mix
from bench.harness import PROVIDERS, Stage, stage

SCENARIOS = ("register", "fanout", "deliver", "baseline", "emulators", "campaign")
CASES = (*PROVIDERS, "mixed")
AUDIENCES = fanout.AUDIENCES
DEFAULT_AUDIENCES = fanout.DEFAULT_AUDIENCES


@dataclass(frozen=True)
class Plan:
    clients: int
    seconds: float
    fanout: tuple[int, ...]
    devices: int
    cases: tuple[str, ...]
    runs: int
    campaign: int
    audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    mix: Mix = DEFAULT_MIX


FULL = Plan(
    clients=16,
    seconds=20,
    fanout=(10_000, 100_000),
    devices=10_000,
    cases=CASES,
    runs=1,
    campaign=100_000,
)
QUICK = Plan(
    clients=4, seconds=3, fanout=(1_000,), devices=300, cases=("mixed",), runs=1, campaign=300
)


def _providers(case: str) -> tuple[str, ...]:
    return PROVIDERS if case == "mixed" else (case,)


async def _median(runs: int, measure: Callable[[Stage], Awaitable[dict[str, Any]]]) -> Any:
    """The run with the median rate, and every run's rate, CPU seconds per 1,000 and p99
    (under other load these move independently; the CPU figure is the steadier one)."""
    rows = []
    for _ in range(runs):
        async with stage() as running:
            rows.append(await measure(running))
    rows.sort(key=lambda row: row["per_second"])
    chosen = rows[(len(rows) - 1) // 2]
    if runs > 1:
        for figure in ("per_second", "cpu_seconds_per_1000", "p99_ms"):
            chosen[f"runs_{figure}"] = [row.get(figure) for row in rows]
    return chosen


async def _scenario(name: str, plan: Plan) -> list[dict[str, Any]]:
    if name == "register":
        return [await _median(plan.runs, lambda s: register.run(s, plan.clients, plan.seconds))]
    if name == "fanout":
        return [
            await _median(plan.runs, lambda s, n=n, a=a: fanout.run(s, n, a))  # type: ignore[misc]
            for n in plan.fanout
            for a in plan.audiences
        ]
    if name == "deliver":
        return [
            await _median(
                plan.runs,
                lambda s, c=case: deliver.run(s, _providers(c), plan.devices),  # type: ignore[misc]
            )
            for case in plan.cases
        ]
    if name == "campaign":
        return [await _median(plan.runs, lambda s: campaign.run(s, plan.campaign, plan.mix))]
    mode = "stream" if name == "baseline" else "preload"
    return [
        await _median(
            plan.runs,
            lambda s, c=case: baseline.run(s, _providers(c), plan.devices, mode),  # type: ignore[misc]
        )
        for case in plan.cases
    ]


async def run(
    names: list[str], plan: Plan, results: Path = report.RESULTS
) -> dict[str, list[dict[str, Any]]]:
    """Run the scenarios in turn, write their results; return their rows."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    if "baseline" in names and "deliver" not in names:
        names = ["deliver", *names]
    done: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        rows = await _scenario(name, plan)
        if name == "baseline":
            delivered = {row["case"]: row["per_second"] for row in done["deliver"]}
            for row in rows:
                row["deliver_ratio"] = round(delivered[row["case"]] / row["per_second"], 3)
        report.write(results, stamp, name, rows, plan=plan.__dict__)
        done[name] = rows
    return done


def _mix(text: str) -> Mix:
    try:
        return campaign.parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=("all", *SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--devices", type=int, help="deliver, baseline, emulators and campaign size"
    )
    parser.add_argument("--fanout", type=int, action="append", help="fanout sizes")
    parser.add_argument("--case", action="append", choices=CASES, dest="cases")
    parser.add_argument("--clients", type=int, help="register: concurrent clients")
    parser.add_argument("--seconds", type=float, help="register: how long")
    parser.add_argument("--runs", type=int, help="runs per case; the median is reported")
    parser.add_argument(
        "--audience",
        action="append",
        choices=AUDIENCES,
        dest="audiences",
        help="fanout: by contact ids, cellphones and emails, to.all, or a to.filters segment",
    )
    parser.add_argument(
        "--mix", type=_mix, help="campaign: providers' shares, e.g. fcm=60,apns=30,webpush=10"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    changes = {
        "devices": args.devices,
        "campaign": args.devices,
        "fanout": tuple(args.fanout) if args.fanout else None,
        "cases": tuple(args.cases) if args.cases else None,
        "clients": args.clients,
        "seconds": args.seconds,
        "runs": args.runs,
        "audiences": tuple(args.audiences) if args.audiences else None,
        "mix": args.mix,
    }
    plan = replace(plan, **{k: v for k, v in changes.items() if v is not None})
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    asyncio.run(run(names, plan))


if __name__ == "__main__":
    main()
