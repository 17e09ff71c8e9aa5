"""The benchmark harness, once at its quick sizes: every scenario completes, counts every
notification and reports its figures. A smoke test of the harness, not a performance test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import QUICK, SCENARIOS, run
from bench.harness import PROVIDERS, SAMPLE_SECONDS
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
            if scenario in ("deliver", "baseline", "emulators", "campaign"):
                # The emulators' threads answered every send: their CPU time is theirs.
                assert row["emulators_cpu_seconds_per_1000"] > 0, (scenario, row["case"])
                assert 0 < row["emulators_busy"] < 1.5, (scenario, row["case"])
            if scenario in ("deliver", "campaign"):
                assert_shared_costs(row, jvms)

    (row,) = results["campaign"]
    count = QUICK.campaign
    assert row["counters_exact"], row["counters"]
    assert row["counters"] == {"targeted": count, "sent": count, "failed": 0, "invalid": 0}
    # 60% FCM, 30% APNs, 10% Web Push.
    assert {p: n["sent"] for p, n in row["by_provider"].items()} == {
        "fcm": count * 6 // 10,
        "apns": count * 3 // 10,
        "webpush": count // 10,
    }
    # The jobs and the ends are sampled apart, each every SAMPLE_SECONDS: at this size the
    # whole send takes a few samples, and the last job may be seen a sample after the end.
    assert 0 < row["jobs_seconds"] <= row["seconds"] + SAMPLE_SECONDS
    assert row["per_second"] > 0
    assert row["series"][-1][1] == count
    assert row["jobs_series"][-1][1] >= count
    # Each emulator's thread, read in clock ticks: 30 Web Push requests may take less than one.
    assert set(row["emulator_cpu_seconds_per_1000"]) == set(PROVIDERS)
    assert all(cpu >= 0 for cpu in row["emulator_cpu_seconds_per_1000"].values())
    assert set(row["rss_mb"]) == {"resolver", "sender", "feedback", "bench", *jvms}
    for name, rss in row["rss_mb"].items():
        assert 0 < rss["start"] <= rss["peak"], name
        assert rss["end"] <= rss["peak"], name
        assert row["rss_series"][name], name


def assert_shared_costs(row: dict[str, Any], jvms: dict[str, int]) -> None:
    """The run's store operations, and the JVMs' CPU time when the stack runs here."""
    assert row["store_ops_per_1000"] is not None, (
        "the store does not answer `top`: a local store started before it counted "
        "operations (deploy/local/StoreServer.java) needs a restart"
    )
    assert set(row["store_ops"]) == set(KINDS), row["case"]
    # Reading devices, marking sends, recording deliveries, counting outcomes.
    assert row["store_ops"]["queries"] > 0, row["case"]
    assert row["store_ops"]["insert"] > 0, row["case"]
    assert row["store_ops"]["update"] > 0, row["case"]
    assert row["store_ops_per_1000"] > 0, row["case"]
    for name in JVMS:
        cpu = row[f"{name}_cpu_seconds_per_1000"]
        assert (cpu is not None and cpu >= 0) if name in jvms else cpu is None, (name, row["case"])
