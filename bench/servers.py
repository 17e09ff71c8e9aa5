"""What a run costs the servers it shares with other work: the CPU time of Kafka's and the
store's JVMs, and the store's operations on the run's own database.

The JVMs are the local stack's (`deploy/local/stack.sh`), found by the pid files in its
state directory; a server that runs elsewhere (no pid file, or a dead pid) has no figure.
Their CPU time is whatever they did while the run lasted, the run's work and anyone else's.
The store's operations are read from MongoDB's `top` admin command (the local store answers
it too, see deploy/local/StoreServer.java), summed over the run's database, so other
databases' work on the same store stays out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymongo.errors import OperationFailure

from bench.harness import Stage, cpu_seconds

JVMS = ("kafka", "store")
# What `top` counts per namespace (besides `total`).
KINDS = ("queries", "getmore", "insert", "update", "remove", "commands")
COMMAND_NOT_FOUND = 59


def jvm_pids(state_dir: Path) -> dict[str, int]:
    """The live processes named by the stack's pid files (`kafka.pid`, `store.pid`)."""
    pids = {}
    for name in JVMS:
        try:
            pid = int((state_dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}/stat").exists():
            pids[name] = pid
    return pids


def operations(top: Mapping[str, Any], database: str) -> dict[str, Counter[str]]:
    """The counts by kind (KINDS, and `micros`: the store's time in them) of each collection
    of `database` in `top`'s totals (keyed `<database>.<collection>`, besides a `note`)."""
    prefix = f"{database}."
    return {
        namespace.removeprefix(prefix): Counter(
            {kind: entry[kind]["count"] for kind in KINDS}
            | {"micros": sum(entry[kind]["time"] for kind in KINDS)}
        )
        for namespace, entry in top["totals"].items()
        if namespace.startswith(prefix) and isinstance(entry, Mapping)
    }


class Servers:
    """The JVMs' CPU time and the store's operations on the stage's database from `mark()`
    on."""

    def __init__(self, stage: Stage) -> None:
        self._db = stage.db
        # The JVMs found, by name.
        self.pids = jvm_pids(stage.settings.state_dir)
        self._cpu: dict[str, float] = {}
        self._ops: dict[str, Counter[str]] | None = None

    async def mark(self) -> None:
        """Start counting from now."""
        self._cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._ops = await self._operations()

    async def costs(self, notifications: int, own_queries: int = 0) -> dict[str, Any]:
        """Since `mark()`: each JVM's CPU seconds per 1,000 notifications (None for one not
        found), and the store's operations per 1,000, by kind and by collection, less
        `own_queries` (the finds the benchmark itself made on `notifications` meanwhile)."""
        per = 1000 / max(notifications, 1)
        figures: dict[str, Any] = {}
        for name in JVMS:
            cpu = cpu_seconds(self.pids[name]) - self._cpu[name] if name in self.pids else None
            figures[f"{name}_cpu_seconds_per_1000"] = None if cpu is None else round(cpu * per, 3)
        ops = await self._operations()
        if ops is None or self._ops is None:
            return {**figures, "store_ops_per_1000": None}
        spent = {name: counts - self._ops.get(name, Counter()) for name, counts in ops.items()}
        spent.setdefault("notifications", Counter())["queries"] -= own_queries
        total = sum(spent.values(), Counter())
        by_kind = {kind: total[kind] for kind in KINDS}
        by_collection = {
            name: sum(counts[kind] for kind in KINDS) for name, counts in spent.items()
        }
        return {
            **figures,
            "store_ops_per_1000": round(sum(by_kind.values()) * per, 1),
            "store_ops": by_kind,
            "store_ops_by_collection": {name: n for name, n in by_collection.items() if n},
            "store_command_seconds": round(total["micros"] / 1e6, 2),
        }

    async def _operations(self) -> dict[str, Counter[str]] | None:
        try:
            top = await self._db.client.admin.command("top")
        except OperationFailure as exc:
            # A store that does not answer `top` (the local store before it counted) has no
            # figure; any other failure is one.
            if exc.code != COMMAND_NOT_FOUND:
                raise
            return None
        return operations(top, self._db.name)
