"""The Kubernetes manifests: valid against the Kubernetes schemas (kubeconform, strict),
and what an operator needs is there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.stack import ROOT

MANIFESTS = ROOT / "deploy/kubernetes"
VALIDATE = ROOT / "deploy/local/validate-k8s.sh"
TOOLS = ROOT / "deploy/local/tools.sh"
SERVICES = ("ingest", "resolver", "sender", "feedback")


def validate(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VALIDATE), str(directory)], capture_output=True, text=True, timeout=900
    )


def built() -> list[dict[str, Any]]:
    kustomize = subprocess.run(
        [str(TOOLS), "path", "kustomize"], capture_output=True, text=True, check=True
    ).stdout.strip()
    output = subprocess.run(
        [kustomize, "build", str(MANIFESTS)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def test_the_manifests_are_valid_kubernetes_resources() -> None:
    result = validate(MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


def test_the_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    broken = tmp_path / "kubernetes"
    shutil.copytree(MANIFESTS, broken)
    sender = broken / "sender.yaml"
    field = '          args: ["sender"]\n'
    sender.write_text(sender.read_text().replace(field, field + "          replica: 2\n"))
    result = validate(broken)
    assert result.returncode != 0
    assert "Invalid: 1" in result.stdout


def test_each_service_has_probes_resources_and_a_disruption_budget() -> None:
    validate(MANIFESTS)  # installs the tools when missing
    resources = built()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], {})[resource["metadata"]["name"]] = resource
    for name in SERVICES:
        deployment = by_kind["Deployment"][f"pushline-{name}"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [name]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
        secrets = {
            e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e
        }
        assert secrets == {"mongodb-uri", "master-key", "admin-token"}
        assert f"pushline-{name}" in by_kind["PodDisruptionBudget"]
    autoscaled = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind["HorizontalPodAutoscaler"].values()
    }
    assert autoscaled == {"pushline-sender", "pushline-resolver"}
    config = by_kind["ConfigMap"]["pushline-config"]["data"]
    assert config["PUSHLINE_METRICS_HOST"] == "0.0.0.0"
    assert "pushline-secrets" in by_kind["Secret"]


def test_the_ingest_service_exposes_the_public_port_only() -> None:
    validate(MANIFESTS)  # installs the tools when missing
    resources = built()
    deployment = next(
        r
        for r in resources
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "pushline-ingest"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080, "admin": 8081}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PUSHLINE_INGEST_PORT"] == "8080"
    assert env["PUSHLINE_ADMIN_PORT"] == "8081"
    config = next(r for r in resources if r["kind"] == "ConfigMap")["data"]
    # The admin listener keeps its loopback default: only a port-forward reaches it.
    assert "PUSHLINE_ADMIN_HOST" not in config
    assert "PUSHLINE_ADMIN_HOST" not in env
    services = [r for r in resources if r["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == ["pushline-ingest"]
    assert [p["targetPort"] for p in services[0]["spec"]["ports"]] == ["http"]
