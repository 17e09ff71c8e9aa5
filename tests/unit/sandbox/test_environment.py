"""The sandbox's settings as `pushline emulators` hands them on: the file that
deploy/local/services.sh sources, read back by the shell and by `load_settings()` as the
settings the emulators wrote."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.settings import SandboxSettings, load_settings
from services.sandbox import environment
from services.sandbox.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator
from services.sandbox.emulators.settings import sandbox_settings, sandbox_vapid


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxSettings]:
    fcm, apns, webpush = FCMEmulator(), APNSEmulator(cert_dir=tmp_path / "tls"), WebPushEmulator()
    with EmulatorThread(fcm, apns, webpush):
        yield sandbox_settings(fcm, apns, webpush, tmp_path / "keys")


def sourced(path: Path) -> dict[str, str]:
    """The PUSHLINE_SANDBOX_* variables a shell has after sourcing `path` as services.sh
    does."""
    shown = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; env -0', "bash", str(path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        check=True,
    ).stdout.decode()
    variables = (line.partition("=") for line in shown.split("\0") if line)
    return {name: value for name, _, value in variables if name.startswith(environment.PREFIX)}


def test_the_file_gives_the_services_the_settings_it_was_written_with(
    sandbox: SandboxSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = environment.write(tmp_path / "state", sandbox)
    assert path == environment.path(tmp_path / "state")
    # It holds private keys.
    assert path.stat().st_mode & 0o077 == 0
    variables = sourced(path)
    assert variables == environment.variables(sandbox)
    assert set(variables) == {f"{environment.PREFIX}{p}" for p in ("FCM", "APNS", "WEBPUSH")}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert load_settings().sandbox == sandbox
    assert environment.read(tmp_path / "state") == sandbox


def test_the_settings_point_at_the_emulators_with_their_credentials(
    sandbox: SandboxSettings,
) -> None:
    assert sandbox.configured
    assert sandbox.fcm is not None
    assert sandbox.apns is not None
    assert sandbox.webpush is not None
    assert sandbox.fcm.credentials.service_account["token_uri"].startswith(sandbox.fcm.endpoint)
    assert sandbox.apns.endpoint.startswith("https://127.0.0.1:")
    assert sandbox.apns.ca_file.exists()
    assert sandbox.webpush.endpoint.startswith("http://127.0.0.1:")


def test_the_sandbox_vapid_key_is_kept(tmp_path: Path) -> None:
    assert sandbox_vapid(tmp_path) == sandbox_vapid(tmp_path)


def test_removing_the_file_leaves_no_emulators(sandbox: SandboxSettings, tmp_path: Path) -> None:
    environment.write(tmp_path, sandbox)
    environment.remove(tmp_path)
    environment.remove(tmp_path)
    with pytest.raises(FileNotFoundError):
        environment.read(tmp_path)
