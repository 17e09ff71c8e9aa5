"""`pushline sandbox inbox`: what the emulators received, as JSON and nothing else."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.sandbox.emulators.state import Record
from tests.integration.pipeline import Emulators
from tests.stack import ROOT

pytestmark = pytest.mark.integration


async def inbox(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "sandbox", "inbox", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def received(emulators: Emulators, provider: str, *targets: str) -> None:
    emulator = {"fcm": emulators.fcm, "apns": emulators.apns, "webpush": emulators.webpush}
    for n, target in enumerate(targets):
        emulator[provider].controls.add(Record(provider, target, 200, None, {}, {}, float(n)))


async def test_the_inbox_filters_by_provider_and_keeps_the_latest_records(
    emulators: Emulators, child_env: dict[str, str], tmp_path: Path
) -> None:
    received(emulators, "fcm", "f1", "f2", "f3")
    received(emulators, "apns", "a1")
    env = {**child_env, "PUSHLINE_STATE_DIR": str(tmp_path / "state")}

    code, out, err = await inbox(env)
    assert (code, err) == (0, "")
    everything = json.loads(out)
    assert {name: [r["target"] for r in records] for name, records in everything.items()} == {
        "fcm": ["f1", "f2", "f3"],
        "apns": ["a1"],
        "webpush": [],
    }

    code, out, err = await inbox(env, "--provider", "fcm", "--limit", "2")
    assert (code, err) == (0, "")
    assert [r["target"] for r in json.loads(out)["fcm"]] == ["f2", "f3"]
    assert set(json.loads(out)) == {"fcm"}

    code, _, err = await inbox(env, "--limit", "0")
    assert code == 2
    assert "expected a positive whole number" in err
