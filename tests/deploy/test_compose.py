"""The container image definition and the single-host compose setup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from services.cli import SERVICES
from tests.stack import ROOT

COMPOSE = ROOT / "deploy/compose"
TOOLS = ROOT / "deploy/local/tools.sh"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return loaded


def test_one_image_runs_every_service_as_its_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["pushline"]' in dockerfile
    assert "PUSHLINE_METRICS_HOST=0.0.0.0" in dockerfile
    services = compose()["services"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == [name]
        assert (COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["environment"]["PUSHLINE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert services["sender"]["deploy"]["replicas"] >= 2
    assert {"kafka", "mongo", "prometheus", "grafana"} <= services.keys()


def test_the_admin_port_is_published_on_the_hosts_loopback_only() -> None:
    ingest = compose()["services"]["ingest"]
    assert ingest["ports"] == ["127.0.0.1:8080:8080", "127.0.0.1:8081:8081"]
    assert ingest["environment"]["PUSHLINE_ADMIN_HOST"] == "0.0.0.0"
    # The ingest's own environment adds to the shared one, it does not replace it.
    assert ingest["environment"]["PUSHLINE_ADMIN_TOKEN"].startswith("${PUSHLINE_ADMIN_TOKEN")
    for name, service in compose()["services"].items():
        if name != "ingest":
            assert not any("8081" in str(port) for port in service.get("ports", [])), name


def test_every_mounted_file_exists() -> None:
    loaded = compose()
    named = set(loaded.get("volumes") or {})
    mounting: set[str] = set()
    for name, service in loaded["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named:
                continue
            # Anything else is a file of this repository, beside the compose file.
            assert source.startswith("."), f"{name}: {source} is no named volume nor a path"
            assert (COMPOSE / source).is_file(), f"{name}: {source}"
            mounting.add(name)
    # Prometheus and Grafana get their configuration from the repository.
    assert {"prometheus", "grafana"} <= mounting


def test_the_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    subprocess.run([str(TOOLS), "prometheus"], check=True, timeout=600)
    # Laid out as the prometheus service mounts them: the rules beside the config.
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
