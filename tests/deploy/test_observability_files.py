"""The dashboard and the alert rules: complete, checked by promtool, and naming only real
metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

import services.core.metrics  # noqa: F401 - defines every family in the registry
from tests.deploy import names
from tests.stack import ROOT

TOOLS = ROOT / "deploy/local/tools.sh"
PROMETHEUS_SCRIPT = ROOT / "deploy/local/prometheus.sh"


def test_the_dashboard_has_a_panel_for_each_concern() -> None:
    titles = {panel["title"] for panel in names.dashboard()["panels"]}
    assert {
        "Ingest requests by route and status",
        "Ingest latency",
        "Sends by provider and outcome",
        "End-to-end latency (accept to provider answer)",
        "Invalid tokens by provider and reason",
        "Registrations by status",
        "Webhooks by outcome",
        "Consumer lag by topic",
        "Dead letters (push.dlq)",
        "Provider quotas: budget, sends that took it, sends that waited",
        "Rate limits: calls refused and fan-outs paced",
        "Jobs taken by lane",
    } <= titles
    for panel in names.dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_alert_rules_cover_each_failure() -> None:
    alerts = {rule["alert"] for rule in names.alert_rules()}
    assert {
        "PushlineServiceDown",
        "PushlineConsumerLagGrowing",
        "PushlineProviderErrorRate",
        "PushlineDeadLetters",
        "PushlineWebhookFailures",
        "PushlineNoSendsWhileRequestsArrive",
        "PushlineAppCredentialsInvalid",
        "PushlineProviderQuotaThrottled",
    } <= alerts


def test_every_name_used_is_a_defined_metric() -> None:
    defined = names.families_of(generate_latest(REGISTRY).decode())
    used = names.used_names()
    assert "pushline_consumer_lag" in used
    assert names.dangling(used, defined) == set()
    # The check itself catches a name that does not exist.
    assert names.dangling({"pushline_sends_totl"}, defined) == {"pushline_sends_totl"}


def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    checked = subprocess.run(
        [str(PROMETHEUS_SCRIPT), "check"], capture_output=True, text=True, timeout=600
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(names.alert_rules())} rules found" in checked.stdout
    # The rules' own unit tests (deploy/prometheus/alerts_test.yml) ran and passed.
    assert "Unit Testing:" in checked.stdout
    assert "FAILED" not in checked.stdout

    broken = tmp_path / "alerts.yml"
    broken.write_text(names.ALERTS.read_text().replace("> 0.05", "> > 0.05"))
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "rules", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
