"""Results files of a scenario: `<date>-<scenario>.json`, a markdown table (`.md`, also
printed) and a chart of throughput over time (`.png`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
# The backend is chosen before pyplot is imported.
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
# Samples are a quarter of a second apart; rates are shown over one-second windows.
WINDOW = 1.0

COLUMNS = (
    ("case", "case", "{}"),
    ("notifications", "count", "{:,}"),
    ("counters", "counters", "{:,}"),
    ("per_second", "per s", "{:,.0f}"),
    ("jobs_per_second", "jobs/s", "{:,.0f}"),
    ("seconds", "seconds", "{:,.1f}"),
    ("accepted_per_second", "accepted/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:,.0f}"),
    ("p99_ms", "p99 ms", "{:,.0f}"),
    ("deliver_ratio", "deliver/baseline", "{:.2f}"),
    ("cpu_seconds_per_1000", "CPU s/1000", "{:.2f}"),
    ("kafka_cpu_seconds_per_1000", "Kafka CPU s/1000", "{:.2f}"),
    ("store_cpu_seconds_per_1000", "store CPU s/1000", "{:.2f}"),
    ("store_ops_per_1000", "store ops/1000", "{:,.0f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
    ("rss_mb", "RSS MiB start/peak/end", "{:,.0f}"),
    ("emulators_cpu_seconds_per_1000", "emulators CPU s/1000", "{:.2f}"),
    ("emulator_cpu_seconds_per_1000", "CPU s per 1000 of its own", "{:.2f}"),
    ("emulators_busy", "emulators busy", "{:.0%}"),
    ("load_per_second", "store load/s", "{:,.0f}"),
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of the columns any row has."""
    columns = [c for c in COLUMNS if any(c[0] in row for row in rows)]
    lines = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [_cell(row.get(key), shape) for key, _, shape in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any, shape: str) -> str:
    """A value as `shape` gives it; a dict as `name value, ...`, and a dict of dicts (RSS
    start, peak, end of each process) as `name v/v/v, ...`."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(
            f"{name} " + ("/".join(shape.format(v) for v in inner.values()))
            if isinstance(inner, dict)
            else f"{name} {_cell(inner, shape)}"
            for name, inner in value.items()
        )
    return shape.format(value)


def chart(scenario: str, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Throughput over time, one line per case."""
    figure, axes = plt.subplots(figsize=(8, 4))
    for row in rows:
        times, rates = rates_of(row.get("series", []))
        axes.plot(times, rates, label=row["case"])
    axes.set_title(f"{scenario}: throughput over time")
    axes.set_xlabel("seconds")
    axes.set_ylabel("per second")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def rates_of(series: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Per-second rates over WINDOW-long windows of a (seconds, count) series."""
    times: list[float] = []
    rates: list[float] = []
    start = series[0] if series else None
    for point in series[1:]:
        assert start is not None
        if point[0] - start[0] >= WINDOW:
            times.append(point[0])
            rates.append((point[1] - start[1]) / (point[0] - start[0]))
            start = point
    return times, rates


def write(
    directory: Path, stamp: str, scenario: str, rows: Sequence[dict[str, Any]], **extra: Any
) -> Path:
    """Write the three files; print the table; return the JSON file's path."""
    directory.mkdir(exist_ok=True)
    base = directory / f"{stamp}-{scenario}"
    base.with_suffix(".json").write_text(
        json.dumps({"scenario": scenario, **extra, "rows": list(rows)}, indent=2) + "\n"
    )
    shown = table(rows)
    base.with_suffix(".md").write_text(f"## {scenario}\n\n{shown}")
    chart(scenario, rows, base.with_suffix(".png"))
    print(f"\n## {scenario}\n\n{shown}\nwritten: {base}.json, .md, .png", flush=True)
    return base.with_suffix(".json")
