"""The benchmark harness, once at its quick sizes: every scenario completes and counts
every notification. A smoke test of the harness, not a performance test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import QUICK, SCENARIOS, run
from bench.servers import JVMS, KINDS, jvm_pids
from services.core.settings import Settings

pytestmark = pytest.mark.integration


async def test_quick_bench_counts_every_notification(
    endpoints: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kafka_bootstrap, mongodb = endpoints
    monkeypatch.setenv("PUSHLINE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PUSHLINE_MONGODB_URI", mongodb)

    results = await run(list(SCENARIOS), QUICK, tmp_path)
    # The local stack's JVMs, when the servers are this machine's (not containers).
    jvms = jvm_pids(Settings().state_dir)

    assert list(results) == list(SCENARIOS)
    for scenario, rows in results.items():
        assert rows, scenario
        for row in rows:
            assert row["notifications"] > 0, (scenario, row["case"])
            assert row["counted"] == row["notifications"], (scenario, row["case"])
            if scenario in ("deliver", "baseline", "emulators"):
                # The emulators' threads answered every send: their CPU time is theirs.
                assert row["emulators_cpu_seconds_per_1000"] > 0, (scenario, row["case"])
                assert 0 < row["emulators_busy"] < 1.5, (scenario, row["case"])
            if scenario == "deliver":
                assert_shared_costs(row, jvms)


def assert_shared_costs(row: dict[str, Any], jvms: dict[str, int]) -> None:
    """The run's store operations, and the JVMs' CPU time when the stack runs here."""
    assert set(row["store_ops"]) == set(KINDS), row["case"]
    # Reading devices, marking sends, recording deliveries, counting outcomes.
    assert row["store_ops"]["queries"] > 0, row["case"]
    assert row["store_ops"]["insert"] > 0, row["case"]
    assert row["store_ops"]["update"] > 0, row["case"]
    assert row["store_ops_per_1000"] > 0, row["case"]
    for name in JVMS:
        cpu = row[f"{name}_cpu_seconds_per_1000"]
        assert (cpu is not None and cpu >= 0) if name in jvms else cpu is None, (name, row["case"])
