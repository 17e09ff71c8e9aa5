"""`python -m bench deliver [--provider P ...] [--devices N] [--runs R]`.

Writes `bench/results/<date>-deliver.json` and prints the median of the runs per provider.
Needs the local stack (`deploy/local/stack.sh up`, or `make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.deliver import run_once

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=("deliver",))
    parser.add_argument(
        "--provider", action="append", choices=("fcm", "apns", "webpush"), dest="providers"
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report: dict[str, Any] = {"scenario": args.scenario, "devices": args.devices, "runs": {}}
    print(f"{'provider':<10}{'median/s':>10}{'runs/s':>28}{'cpu s/1000':>12}")
    for provider in args.providers or ["fcm", "apns", "webpush"]:
        runs = [asyncio.run(run_once(provider, args.devices)) for _ in range(args.runs)]
        rates = [r["per_second"] for r in runs]
        cpu = statistics.median(r["cpu_seconds_per_1000"] for r in runs)
        report["runs"][provider] = {"median_per_second": statistics.median(rates), "runs": runs}
        shown = ", ".join(f"{rate:.0f}" for rate in rates)
        print(f"{provider:<10}{statistics.median(rates):>10.0f}{shown:>28}{cpu:>12.2f}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    path = RESULTS / f"{stamp}-{args.scenario}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
