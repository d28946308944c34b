"""The monitoring rules (charts/scheduler-rollouts/files/prometheus-rules.yaml) under promtool.

``promtool check rules`` parses every expression; ``promtool test rules`` runs
``prometheus-rules.test.yaml``, where each alert fires on a synthetic series that crosses its
threshold and stays silent on one that does not (checked here, so an alert cannot be added
without both cases). The recording rules are compared with the operator's own built-in queries
(``rollout_operator.analysis.queries``) on the same series: one promtool test evaluates both and
expects the same numbers, with series of another namespace and other tracks around that must not
leak into either.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.analysis import queries
from rollout_operator.model import Comparison, Rule, ShadowCompare
from tests.chart.conftest import RULES

pytestmark = pytest.mark.unit

UNIT_TESTS = Path(__file__).parent / "prometheus-rules.test.yaml"


def promtool_run(promtool: Path, *args: str) -> str:
    result = subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules_file(promtool: Path) -> None:
    out = promtool_run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS: 17 rules found" in out


def test_promtool_unit_tests_of_every_alert_pass(promtool: Path) -> None:
    out = promtool_run(promtool, "test", "rules", str(UNIT_TESTS))
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    groups = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    for alert in alerts():
        name = alert["alert"]
        cases = [
            [t for t in group.get("alert_rule_test", []) if t["alertname"] == name]
            for group in groups
        ]
        fires = [c for c in cases if any(t["exp_alerts"] for t in c)]
        silent = [c for c in cases if c and not any(t["exp_alerts"] for t in c)]
        assert fires, f"{name}: no test where it fires"
        assert silent, f"{name}: no test where it stays silent on the whole series"
        severity = {a["exp_labels"]["severity"] for c in fires for t in c for a in t["exp_alerts"]}
        assert severity == {alert["labels"]["severity"]}


def counter(labels: str, per_minute: float) -> dict[str, str]:
    return {"series": labels, "values": f"0+{per_minute}x20"}


def gauge(labels: str, value: float) -> dict[str, str]:
    return {"series": labels, "values": f"{value}x20"}


def series() -> list[dict[str, str]]:
    """Namespace plant: canary, stable and shadow at known rates; namespace other: a canary with
    different numbers that neither query may pick up."""
    out: list[dict[str, str]] = []
    for ns, track, requested, scheduled, ok, failed, ratio_sum in (
        ("plant", "canary", 100, 90, 95, 5, 105),
        ("plant", "stable", 100, 99, 100, 0, 100),
        ("plant", "shadow", 100, 100, 100, 0, 110),
        ("other", "canary", 100, 50, 50, 50, 200),
    ):
        at = f'namespace="{ns}", track="{track}", pod="{ns}-{track}"'
        out += [
            counter(f"scheduler_jobs_requested_total{{{at}}}", requested),
            counter(f"scheduler_jobs_scheduled_total{{{at}}}", scheduled),
            counter(f'scheduler_requests_total{{{at}, code="OK"}}', ok),
            counter(f'scheduler_requests_total{{{at}, code="INTERNAL"}}', failed),
            counter(f"scheduler_makespan_ratio_sum{{{at}}}", ratio_sum),
            counter(f"scheduler_makespan_ratio_count{{{at}}}", 100),
        ]
        # every call of plant's canary between 1 and 5 s (p95 = 1 + 4 * 0.95), the others faster
        slow = ns == "plant" and track == "canary"
        for le, per_minute in (("1.0", 0 if slow else 60), ("5.0", 60), ("10.0", 60), ("+Inf", 60)):
            out.append(
                counter(f'scheduler_request_duration_seconds_bucket{{{at}, le="{le}"}}', per_minute)
            )
    for ns, pod, track, used in (
        ("plant", "c1", "canary", 600),
        ("plant", "c2", "canary", 800),
        ("plant", "s1", "stable", 900),
        ("other", "o1", "canary", 990),
    ):
        at = f'namespace="{ns}", pod="{pod}"'
        out += [
            gauge(f'container_memory_working_set_bytes{{{at}, container="scheduler"}}', used),
            gauge(f'kube_pod_container_resource_limits{{{at}, resource="memory"}}', 1000),
            gauge(f'kube_pod_labels{{{at}, label_track="{track}"}}', 1),
        ]
    return out


# operator rule -> (recorded series, its value for plant's canary)
RECORDED = {
    "completion-rate": ("namespace_track:scheduler_completion_rate:ratio_rate2m", 0.9),
    "error-rate": ("namespace_track:scheduler_error_rate:ratio_rate2m", 0.05),
    "latency-p95-seconds": ("namespace_track:scheduler_request_duration_seconds:p95_rate2m", 4.8),
    "memory-utilisation": ("namespace_track:scheduler_memory_utilisation:max", 0.8),
}


def same(left: str, right: str, labels: str = "{}") -> dict[str, Any]:
    """A promtool case: ``left`` and ``right`` agree to 1e-9 (promtool compares floats exactly,
    and the rates' last bits differ with the order of the arithmetic)."""
    return {
        "expr": f"abs(({left}) - on () ({right})) < bool 1e-9",
        "eval_time": "10m",
        "exp_samples": [{"labels": labels, "value": 1}],
    }


def equivalence_tests(rules: Path) -> dict[str, Any]:
    """promtool tests: each operator query equals its recorded series for plant's canary (the
    shadow comparison for plant), and the recorded series has the value the series imply."""
    tests = []
    for name, (record, value) in RECORDED.items():
        rule = Rule(name=name, query="", comparison=Comparison.ABOVE, threshold=0)
        recorded = f'{record}{{namespace="plant", track="canary"}}'
        tests += [
            same(queries.render(rule, "canary", "plant", "r", 60), recorded),
            same(recorded, str(value), labels='{namespace="plant", track="canary"}'),
        ]
    shadow = queries.render(queries.shadow_rule(ShadowCompare()), "shadow", "plant", "r", 60)
    regression = 'namespace:scheduler_shadow_makespan_regression:rate2m{namespace="plant"}'
    tests += [same(shadow, regression), same(regression, "0.1", labels='{namespace="plant"}')]
    return {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series(), "promql_expr_test": tests}],
    }


def test_recording_rules_record_the_operators_queries(promtool: Path, tmp_path: Path) -> None:
    # At the default analysis interval (60 s) the operator's window is the recording rules' 2m.
    assert queries.window(60) == "120s"
    path = tmp_path / "recording.test.yaml"
    path.write_text(yaml.safe_dump(equivalence_tests(RULES), sort_keys=False))
    assert "SUCCESS" in promtool_run(promtool, "test", "rules", str(path))


def test_the_equivalence_test_can_fail(promtool: Path, tmp_path: Path) -> None:
    """A recording rule that drops the track from its grouping is caught by the same harness."""
    broken = RULES.read_text().replace(
        "sum by (namespace, track) (rate(scheduler_jobs_scheduled_total[2m]))",
        "sum by (namespace) (rate(scheduler_jobs_scheduled_total[2m])) * 0.5",
    )
    assert broken != RULES.read_text()
    rules = tmp_path / "rules.yaml"
    rules.write_text(broken)
    path = tmp_path / "broken.test.yaml"
    path.write_text(yaml.safe_dump(equivalence_tests(rules), sort_keys=False))
    result = subprocess.run(
        [str(promtool), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0, result.stdout
    assert "scheduler_completion_rate" in result.stdout + result.stderr
