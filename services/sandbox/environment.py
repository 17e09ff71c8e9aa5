"""How the services learn where the emulators are: the `PUSHLINE_SANDBOX_*` settings of
running emulators (`SandboxSettings`), and the file `pushline emulators` keeps them in
while it runs, `$PUSHLINE_STATE_DIR/emulators/sandbox.env`.

`deploy/local/services.sh` sources that file for the services it starts; tests and the
benchmark, whose emulators run in their own process, pass `variables()` instead. The file
is written only once every emulator listens, and removed when they stop. The settings of
given emulators are `services.sandbox.emulators.settings`'s (this module imports no
emulator: the `pushline` command loads it in every process).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from services.core.settings import SandboxSettings

PREFIX = "PUSHLINE_SANDBOX_"
_HEADER = """\
# Written by `pushline emulators` once they listen, removed when they stop: where sandbox
# apps deliver, and the test credentials the emulators take. deploy/local/services.sh
# passes these to the services it starts (`set -a; . THIS_FILE; set +a`).
"""


def path(state_dir: Path) -> Path:
    """The file of the running emulators' settings under `state_dir`."""
    return state_dir / "emulators" / "sandbox.env"


def variables(sandbox: SandboxSettings) -> dict[str, str]:
    """`sandbox` as the environment variables `load_settings()` reads it from."""
    targets = {"fcm": sandbox.fcm, "apns": sandbox.apns, "webpush": sandbox.webpush}
    return {
        f"{PREFIX}{name.upper()}": target.model_dump_json()
        for name, target in targets.items()
        if target is not None
    }


def write(state_dir: Path, sandbox: SandboxSettings) -> Path:
    """Write `sandbox` as the running emulators' file under `state_dir` (readable by the
    owner only: it holds private keys), whole or not at all. Returns its path."""
    target = path(state_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}={shlex.quote(value)}\n" for name, value in variables(sandbox).items()]
    partial = target.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(_HEADER + "".join(lines))
    # A reader sees the old file or the new one, never half of one.
    partial.replace(target)
    return target


def remove(state_dir: Path) -> None:
    """Remove the file under `state_dir`: the emulators stopped."""
    path(state_dir).unlink(missing_ok=True)


def read(state_dir: Path) -> SandboxSettings:
    """The settings the running emulators wrote under `state_dir`.

    Raises FileNotFoundError when no emulators run there, ValueError for a file they did
    not write.
    """
    values = {}
    for assignment in shlex.split(path(state_dir).read_text(), comments=True):
        name, _, value = assignment.partition("=")
        values[name.removeprefix(PREFIX).lower()] = value
    return SandboxSettings.model_validate(values)
