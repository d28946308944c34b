"""The Grafana dashboard the chart ships (files/grafana-dashboard.json): rendered as the sidecar
wants it, switched off by its value, and every panel's PromQL parsed by promtool and reading only
series the scheduler and the operator really export, per namespace.

Whether each query finds data on a live plant is tests/e2e/test_dashboard.py's job.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from jobshop_scheduler.service.metrics import SchedulerMetrics
from jobshop_scheduler.service.shadow_pairs import ShadowPairs
from rollout_operator.metrics import OperatorMetrics
from tests.chart.conftest import CHART, Chart, kinds, one

pytestmark = pytest.mark.unit

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
DASHBOARD_CM = "sr-scheduler-rollouts-dashboard"  # release sr, as conftest renders it
# What Grafana substitutes before a query runs, with values a test Prometheus understands.
VARIABLES = {"$namespace": "plant", "$__rate_interval": "1m", "$__range": "10m"}
SERIES = re.compile(r"\b((?:scheduler|rollout_operator)_[a-z_]+)\b")
SELECTOR = re.compile(r"\b(?:scheduler|rollout_operator)_[a-z_]+\{([^}]*)\}")


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def exported_names() -> set[str]:
    """Every sample name the scheduler (its contract and the mirror's pairs) and the operator
    expose, histogram and counter suffixes included."""
    registry = CollectorRegistry()
    SchedulerMetrics("stable", registry)
    ShadowPairs(registry, "stable")
    names = set()
    for reg in (registry, OperatorMetrics().registry):
        for family in reg.collect():
            names |= {s.name for s in family.samples} | {family.name}
    return names


def test_the_chart_ships_the_dashboard_for_the_grafana_sidecar(chart: Chart) -> None:
    (config_map,) = [
        c for c in kinds(chart.render(), "ConfigMap") if c["metadata"]["name"] == DASHBOARD_CM
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's default
    assert config_map["metadata"]["namespace"] == "ops"
    (body,) = config_map["data"].values()
    assert json.loads(body) == dashboard()


def test_the_dashboard_can_be_switched_off_or_relabelled(chart: Chart) -> None:
    off = chart.render(sets=("monitoring.grafanaDashboard.enabled=false",))
    assert not [c for c in kinds(off, "ConfigMap") if c["metadata"]["name"] == DASHBOARD_CM]
    sets = (
        "monitoring.grafanaDashboard.labels.grafana_dashboard=null",
        "monitoring.grafanaDashboard.labels.dashboards=scheduling",
        "monitoring.grafanaDashboard.annotations.grafana_folder=Plant",
    )
    relabelled = one(chart.render(sets=sets), "ConfigMap", DASHBOARD_CM)["metadata"]
    assert relabelled["labels"]["dashboards"] == "scheduling"
    assert "grafana_dashboard" not in relabelled["labels"]
    assert relabelled["annotations"] == {"grafana_folder": "Plant"}


def test_the_operators_own_series_keep_the_rollouts_namespace(chart: Chart) -> None:
    objects = chart.render(sets=("monitoring.serviceMonitor.enabled=true",))
    monitor = one(objects, "ServiceMonitor", "sr-scheduler-rollouts-operator")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_the_dashboard_has_the_seeds_panels_and_a_namespace_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert "label_values(scheduler_requests_total, namespace)" in json.dumps(variables["namespace"])
    used = {name for _, e in exprs() for name in SERIES.findall(e)}
    assert {
        "scheduler_requests_total",
        "scheduler_request_duration_seconds_bucket",
        "scheduler_jobs_scheduled_total",
        "scheduler_makespan_ratio_sum",
        "scheduler_batches_total",
        "scheduler_fallback_total",
        "scheduler_model_info",
        "scheduler_shadow_pairs_total",
        "scheduler_machine_time_saved",
        "rollout_operator_phase",
        "rollout_operator_weight",
    } <= used


def test_every_query_reads_exported_series_of_the_chosen_namespace() -> None:
    names = exported_names()
    for title, expr in exprs():
        for name in SERIES.findall(expr):
            assert name in names, f"{title}: {name} is not exported by the scheduler or operator"
        selectors = SELECTOR.findall(expr)
        assert selectors and all('namespace="$namespace"' in s for s in selectors), title


def test_promtool_parses_every_query(promtool: Path, tmp_path: Path) -> None:
    rules = [{"record": f"panel:{i}", "expr": substitute(e)} for i, (_, e) in enumerate(exprs())]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
