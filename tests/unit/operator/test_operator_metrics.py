"""The operator's own metrics: what a scrape of its port shows after phases, analyses, rollbacks."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rollout_operator.metrics import OperatorMetrics
from rollout_operator.model import (
    AnalysisReport,
    Comparison,
    MetricResult,
    Phase,
    Verdict,
)

pytestmark = pytest.mark.unit

Sample = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture()
def metrics() -> Iterator[OperatorMetrics]:
    m = OperatorMetrics()
    yield m
    m.close()


def scrape(port: int) -> dict[Sample, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("rollout_operator_")
    }


def key(name: str, **labels: str) -> Sample:
    return (name, tuple(sorted({"rollout": "r1", "namespace": "plant", **labels}.items())))


def result(name: str, value: float | None, threshold: float, verdict: Verdict) -> MetricResult:
    return MetricResult(name, value, threshold, Comparison.BELOW, verdict)


REPORT = AnalysisReport(
    time=1700000000.0,
    rollback=(
        result("completion-rate", 0.84, 0.90, Verdict.BREACH),
        result("latency-p95-seconds", None, 10.0, Verdict.NO_DATA),
    ),
    warn=(result("completion-rate", 0.84, 0.95, Verdict.BREACH),),
    shadow_compare=result("shadow-makespan-regression", -0.01, 0.0, Verdict.PASS),
)


def test_serve_on_port_zero_returns_the_bound_port(metrics: OperatorMetrics) -> None:
    port = metrics.serve(0, host="127.0.0.1")
    assert port > 0
    assert scrape(port) == {}  # nothing recorded yet
    with pytest.raises(RuntimeError):
        metrics.serve(0, host="127.0.0.1")


def test_phase_is_one_for_the_current_phase_and_zero_for_the_others(
    metrics: OperatorMetrics,
) -> None:
    port = metrics.serve(0, host="127.0.0.1")
    metrics.record_state("r1", "plant", Phase.SHADOW, 0)
    metrics.record_state("r1", "plant", Phase.CANARY, 25)
    seen = scrape(port)
    phases = {p: seen[key("rollout_operator_phase", phase=p.value)] for p in Phase}
    assert phases == {p: float(p is Phase.CANARY) for p in Phase}
    assert seen[key("rollout_operator_weight")] == 25.0


def test_an_analysis_round_shows_value_threshold_and_verdict_per_rule_and_kind(
    metrics: OperatorMetrics,
) -> None:
    port = metrics.serve(0, host="127.0.0.1")
    metrics.record_analysis("r1", "plant", REPORT)
    seen = scrape(port)

    def value(name: str, metric: str, kind: str, **extra: str) -> float:
        return seen[key(f"rollout_operator_analysis_{name}", metric=metric, kind=kind, **extra)]

    assert value("value", "completion-rate", "rollback") == 0.84
    assert value("threshold", "completion-rate", "rollback") == 0.90
    assert value("threshold", "completion-rate", "warn") == 0.95
    assert value("verdict", "completion-rate", "rollback", verdict="breach") == 1.0
    assert value("verdict", "completion-rate", "rollback", verdict="pass") == 0.0
    assert math.isnan(value("value", "latency-p95-seconds", "rollback"))
    assert value("verdict", "latency-p95-seconds", "rollback", verdict="noData") == 1.0
    assert value("no_data_total", "latency-p95-seconds", "rollback") == 1.0
    assert value("value", "shadow-makespan-regression", "shadowCompare") == -0.01
    assert value("verdict", "shadow-makespan-regression", "shadowCompare", verdict="pass") == 1.0
    assert seen[key("rollout_operator_last_analysis_timestamp_seconds")] == 1700000000.0

    metrics.record_analysis("r1", "plant", REPORT)
    assert (
        scrape(port)[
            key(
                "rollout_operator_analysis_no_data_total",
                metric="latency-p95-seconds",
                kind="rollback",
            )
        ]
        == 2.0
    )


def test_rollbacks_count_by_metric(metrics: OperatorMetrics) -> None:
    port = metrics.serve(0, host="127.0.0.1")
    metrics.record_rollback("r1", "plant", "completion-rate")
    metrics.record_rollback("r1", "plant", "completion-rate")
    metrics.record_rollback("r1", "plant", "noData")
    seen = scrape(port)
    assert seen[key("rollout_operator_rollbacks_total", metric="completion-rate")] == 2.0
    assert seen[key("rollout_operator_rollbacks_total", metric="noData")] == 1.0


def test_forget_drops_only_that_rollouts_series(metrics: OperatorMetrics) -> None:
    port = metrics.serve(0, host="127.0.0.1")
    for rollout in ("r1", "r2"):
        metrics.record_state(rollout, "plant", Phase.CANARY, 10)
        metrics.record_analysis(rollout, "plant", REPORT)
        metrics.record_rollback(rollout, "plant", "error-rate")
    metrics.forget("r1", "plant")
    metrics.forget("r1", "plant")  # twice is harmless
    rollouts = {dict(labels)["rollout"] for _, labels in scrape(port)}
    assert rollouts == {"r2"}


def test_two_instances_do_not_share_series() -> None:
    a, b = OperatorMetrics(), OperatorMetrics()
    a.record_rollback("r1", "plant", "error-rate")
    assert (
        b.registry.get_sample_value(
            "rollout_operator_rollbacks_total",
            {"rollout": "r1", "namespace": "plant", "metric": "error-rate"},
        )
        is None
    )
