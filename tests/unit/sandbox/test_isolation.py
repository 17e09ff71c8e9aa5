"""The production services never import the sandbox: only the `pushline` command wires it
in, so the services run without the test rig."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[3] / "services"
SANDBOX = "services.sandbox"
# The command line is the one place that wires the sandbox in.
WIRING = {SERVICES / "cli.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, package: str) -> set[str]:
    """Every module that `source` (a module of `package`) imports, in full, and every
    string that could name one for importlib."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            anchor = parts[: len(parts) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names


def sandboxed(name: str) -> bool:
    return name == SANDBOX or name.startswith((f"{SANDBOX}.", f"{SANDBOX}:"))


def production_modules() -> list[Path]:
    return [
        path
        for path in sorted(SERVICES.rglob("*.py"))
        if path not in WIRING and not module_name(path).startswith(SANDBOX)
    ]


def test_the_walk_covers_every_service() -> None:
    walked = {module_name(path) for path in production_modules()}
    for package in ("core", "ingest", "resolver", "sender", "feedback"):
        assert f"services.{package}" in walked


def test_no_production_module_imports_the_sandbox() -> None:
    offenders: set[str] = set()
    for path in production_modules():
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        offenders.update(
            f"{name}: {target}"
            for target in imported(path.read_text(), package)
            if sandboxed(target)
        )
    assert offenders == set()


@pytest.mark.parametrize(
    "source",
    [
        "import services.sandbox.emulators",
        "from services.sandbox.emulators import FCMEmulator",
        "from services import sandbox",
        "from .. import sandbox",
        "from ..sandbox.emulators.fcm import FCMEmulator",
        "importlib.import_module('services.sandbox.command')",
    ],
)
def test_each_form_of_import_is_seen(source: str) -> None:
    assert any(sandboxed(name) for name in imported(source, "services.sender"))


def test_a_service_process_loads_no_emulator() -> None:
    # `pushline sender` and the rest start through the command line, which wires in
    # `pushline sandbox`: that must not bring the emulators along.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, services.cli; print(*sorted(sys.modules), sep='\\n')",
        ],
        cwd=SERVICES.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [name for name in loaded if name.startswith(f"{SANDBOX}.emulators")] == []
