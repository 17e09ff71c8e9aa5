from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import cpu_seconds
from bench.servers import jvm_pids, operations


def entry(**counts: int) -> dict[str, Any]:
    """A `top` entry: each kind's count (time: ten microseconds each), and the total."""
    kinds = ("queries", "getmore", "insert", "update", "remove", "commands")
    found = {
        kind: {"count": counts.get(kind, 0), "time": 10 * counts.get(kind, 0)} for kind in kinds
    }
    total = sum(counts.values())
    return {**found, "total": {"count": total, "time": 10 * total}}


def test_operations_are_the_databases_own_by_collection() -> None:
    top = {
        "totals": {
            "note": "all times in microseconds",
            "bench_1.devices": entry(queries=2, getmore=5),
            "bench_1.sends": entry(insert=7, update=1),
            # Another run's database, whose name the first one's is a prefix of.
            "bench_10.devices": entry(queries=100),
            "pushline.devices": entry(insert=100),
        }
    }

    found = operations(top, "bench_1")

    assert found == {
        "devices": Counter(
            queries=2, getmore=5, insert=0, update=0, remove=0, commands=0, micros=70
        ),
        "sends": Counter(queries=0, getmore=0, insert=7, update=1, remove=0, commands=0, micros=80),
    }


def test_the_stacks_jvms_are_the_live_processes_of_its_pid_files(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        check=True,
        text=True,
    )
    (tmp_path / "kafka.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "store.pid").write_text(finished.stdout)

    assert jvm_pids(tmp_path) == {"kafka": os.getpid()}
    (tmp_path / "kafka.pid").write_text("not a pid\n")
    assert jvm_pids(tmp_path) == {}


def test_cpu_seconds_grow_with_the_work_a_process_does() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.15
