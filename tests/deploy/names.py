"""The metric names the dashboard and the alert rules use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.stack import ROOT

DASHBOARD = ROOT / "deploy/grafana/pushline.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"

# PromQL's names of series that Prometheus makes itself, not a service.
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"\b(pushline_[a-z0-9_]+|up)\b")
# What a histogram or counter family's samples append to its name.
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard as JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> Iterator[str]:
    """Every PromQL expression of the dashboard's panels."""
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield str(target["expr"])


def alert_rules() -> list[dict[str, Any]]:
    """The alert rules of every group."""
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def used_names() -> set[str]:
    """Every series name in the dashboard and the alert rules."""
    exprs = [*dashboard_exprs(), *(str(rule["expr"]) for rule in alert_rules())]
    return {name for expr in exprs for name in _NAME.findall(expr)}


def dangling(names: set[str], families: set[str]) -> set[str]:
    """The names that are neither a family of `families`, nor one of its samples' names,
    nor a series Prometheus makes itself."""

    def known(name: str) -> bool:
        if name in families or name in PROMETHEUS_OWN:
            return True
        return any(name == family + suffix for family in families for suffix in _SUFFIXES)

    return {name for name in names if not known(name)}


def families_of(exposition: str) -> set[str]:
    """Metric family names of a Prometheus text exposition (its HELP and TYPE lines)."""
    found = set()
    for line in exposition.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            found.add(line.split(" ", 3)[2])
    return found
