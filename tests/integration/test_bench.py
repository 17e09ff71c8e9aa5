"""The benchmark harness, once at its quick sizes: every scenario completes and counts
every notification. A smoke test of the harness, not a performance test."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import QUICK, SCENARIOS, run

pytestmark = pytest.mark.integration


async def test_quick_bench_counts_every_notification(
    endpoints: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kafka_bootstrap, mongodb = endpoints
    monkeypatch.setenv("PUSHLINE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PUSHLINE_MONGODB_URI", mongodb)

    results = await run(list(SCENARIOS), QUICK, tmp_path)

    assert list(results) == list(SCENARIOS)
    for scenario, rows in results.items():
        assert rows, scenario
        for row in rows:
            assert row["notifications"] > 0, (scenario, row["case"])
            assert row["counted"] == row["notifications"], (scenario, row["case"])
            if scenario in ("deliver", "baseline", "emulators"):
                # The emulators' thread answered every send: its CPU time is theirs.
                assert row["emulators_cpu_seconds_per_1000"] > 0, (scenario, row["case"])
                assert 0 < row["emulators_busy"] < 1.5, (scenario, row["case"])
