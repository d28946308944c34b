"""The analysis against the real Prometheus, scraping a target whose contract series the test sets.

Each scenario lives in a namespace of its own (the built-in queries select by namespace), and all
of them are written once when the module starts, so their samples accumulate side by side while
the tests run. Values are chosen so the expected answers are exact: a completion rate of 0.8, a
p95 interpolated inside one latency bucket (all observations at 12 s fall in (10, 15], so the
p95 is 10 + 0.95 * 5 = 14.75 s), a makespan-ratio difference of +0.05.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rollout_operator.analysis import NoData, analyse
from rollout_operator.analysis.prometheus import PrometheusProvider
from rollout_operator.model import (
    AnalysisReport,
    AnalysisSpec,
    Comparison,
    MetricResult,
    Rule,
    ShadowCompare,
    Verdict,
)
from testbed.metrics_target import MetricsTarget, contract_traffic
from testbed.prometheus import PrometheusServer, ScrapeJob

pytestmark = pytest.mark.prometheus

JOB = "operator-analysis"
SETTLE_TIMEOUT_S = 30.0
GIB = 2.0**30

ROLLBACK = (
    Rule("completion-rate", "", Comparison.BELOW, 0.90, for_=2),
    Rule("latency-p95-seconds", "", Comparison.ABOVE, 10.0, for_=3),
    Rule("error-rate", "", Comparison.ABOVE, 0.05, for_=2),
)
WARN = (
    Rule("completion-rate", "", Comparison.BELOW, 0.95),
    Rule("latency-p95-seconds", "", Comparison.ABOVE, 5.0),
    Rule("memory-utilisation", "", Comparison.ABOVE, 0.90),
)

# namespace -> the canary's traffic (stable is always healthy)
SCENARIOS: dict[str, dict[str, float]] = {
    "healthy": {},
    "incomplete": {"completion": 0.8},
    "slow": {"latency_s": 12.0},
    "failing": {"error_rate": 0.1},
    "idle": {"requests_per_s": 0.0},
    "sluggish": {"latency_s": 7.0},  # above the warning (5 s), below the rollback (10 s)
}
# namespace -> (working set, limit) of the canary's pods, in GiB
MEMORY = {"healthy": (0.4, 0.6), "sluggish": (0.5, 0.95)}


def write_memory(target: MetricsTarget, namespace: str, fractions: tuple[float, ...]) -> None:
    """cAdvisor and kube-state-metrics series for one canary pod per fraction, plus a stable pod
    close to its limit that the canary's number must not include."""
    pods = [(f"canary-{i}", "canary", f) for i, f in enumerate(fractions)]
    for pod, track, fraction in [*pods, ("stable-0", "stable", 0.99)]:
        where = {"namespace": namespace, "pod": pod}
        container = {**where, "container": "scheduler"}
        target.set_gauge("container_memory_working_set_bytes", container, fraction * GIB)
        # cAdvisor's pod-level cgroup (container="") must not be counted twice.
        target.set_gauge("container_memory_working_set_bytes", {**where, "container": ""}, GIB)
        limits = {**container, "resource": "memory", "unit": "byte"}
        target.set_gauge("kube_pod_container_resource_limits", limits, GIB)
        target.set_gauge("kube_pod_labels", {**where, "label_track": track}, 1.0)


@pytest.fixture(scope="module")
def target() -> Iterator[MetricsTarget]:
    target = MetricsTarget().start()
    for namespace, canary in SCENARIOS.items():
        contract_traffic(target, {"namespace": namespace, "track": "canary"}, **canary)
        contract_traffic(target, {"namespace": namespace, "track": "stable"})
    for namespace, fractions in MEMORY.items():
        write_memory(target, namespace, fractions)
    for namespace, ratio in (("shadow-worse", 1.05), ("shadow-better", 0.95)):
        contract_traffic(target, {"namespace": namespace, "track": "shadow"}, makespan_ratio=ratio)
        contract_traffic(target, {"namespace": namespace, "track": "stable"}, makespan_ratio=1.0)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture(scope="module")
def prom(prometheus: PrometheusServer, target: MetricsTarget) -> Iterator[PrometheusServer]:
    prometheus.scrape(ScrapeJob(JOB, (target.address,)))
    try:
        # rate() answers once every series has been scraped twice
        prometheus.wait_for_series(f'rate(scheduler_requests_total{{job="{JOB}"}}[1m])')
        yield prometheus
    finally:
        prometheus.forget(JOB)


def spec(prom: PrometheusServer, **changes: Any) -> AnalysisSpec:
    analysis = AnalysisSpec(interval_s=1.0, prometheus_url=prom.url, rollback=ROLLBACK, warn=WARN)
    return dataclasses.replace(analysis, **changes)


def settled(
    analysis: AnalysisSpec, namespace: str, *, track: str = "canary", expect_no_data: int = 0
) -> AnalysisReport:
    """Analyse until at most ``expect_no_data`` results lack data (rate() needs two scrapes)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        report = analyse(
            analysis,
            track=track,
            namespace=namespace,
            rollout="sched",
            shadow=track == "shadow",
            now=time.time(),
        )
        missing = [r for r in results(report) if r.verdict is Verdict.NO_DATA]
        if len(missing) <= expect_no_data or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def results(report: AnalysisReport) -> list[MetricResult]:
    compare = [report.shadow_compare] if report.shadow_compare else []
    return [*report.rollback, *report.warn, *compare]


def verdicts(results: tuple[MetricResult, ...]) -> dict[str, Verdict]:
    return {r.name: r.verdict for r in results}


def value(results: tuple[MetricResult, ...], name: str) -> float | None:
    return next(r.value for r in results if r.name == name)


def test_healthy_canary_passes_every_rule(prom: PrometheusServer) -> None:
    report = settled(spec(prom), "healthy")
    assert [r.verdict for r in results(report)] == [Verdict.PASS] * 6, results(report)
    assert value(report.rollback, "completion-rate") == pytest.approx(1.0)
    assert value(report.rollback, "error-rate") == pytest.approx(0.0)
    assert value(report.rollback, "latency-p95-seconds") == pytest.approx(0.1 + 0.15 * 0.95)
    assert value(report.warn, "memory-utilisation") == pytest.approx(0.6)  # the fuller pod


@pytest.mark.parametrize(
    ("namespace", "breached", "measured", "warned"),
    [
        ("incomplete", "completion-rate", 0.8, {"completion-rate"}),
        ("slow", "latency-p95-seconds", 14.75, {"latency-p95-seconds"}),
        ("failing", "error-rate", 0.1, set()),
    ],
)
def test_each_rollback_trigger_breaches(
    prom: PrometheusServer, namespace: str, breached: str, measured: float, warned: set[str]
) -> None:
    report = settled(spec(prom), namespace, expect_no_data=1)  # no memory series here
    expected = {rule.name: Verdict.PASS for rule in ROLLBACK} | {breached: Verdict.BREACH}
    assert verdicts(report.rollback) == expected, report.rollback
    assert value(report.rollback, breached) == pytest.approx(measured)
    assert {name for name, v in verdicts(report.warn).items() if v is Verdict.BREACH} == warned


def test_warnings_breach_at_their_softer_thresholds_without_a_rollback_trigger(
    prom: PrometheusServer,
) -> None:
    report = settled(spec(prom), "sluggish")
    assert verdicts(report.rollback) == {rule.name: Verdict.PASS for rule in ROLLBACK}
    assert verdicts(report.warn) == {
        "completion-rate": Verdict.PASS,
        "latency-p95-seconds": Verdict.BREACH,  # p95 in (5, 7.5]: 5 + 0.95 * 2.5
        "memory-utilisation": Verdict.BREACH,  # the pod at 95% of its limit
    }
    assert value(report.warn, "latency-p95-seconds") == pytest.approx(7.375)
    assert value(report.warn, "memory-utilisation") == pytest.approx(0.95)


def test_a_rule_whose_series_does_not_exist_has_no_data(prom: PrometheusServer) -> None:
    missing = Rule(
        "restarts", 'sum(scheduler_no_such_series{namespace="{{namespace}}"})', Comparison.ABOVE, 0
    )
    report = settled(spec(prom, rollback=(*ROLLBACK, missing)), "failing", expect_no_data=2)
    by_name = {r.name: r for r in report.rollback}
    assert by_name["restarts"].verdict is Verdict.NO_DATA
    assert by_name["restarts"].value is None
    assert "no series" in by_name["restarts"].detail
    assert verdicts(report.warn)["memory-utilisation"] is Verdict.NO_DATA  # no kube metrics here
    assert by_name["error-rate"].verdict is Verdict.BREACH  # the others are measured as usual


def test_no_traffic_is_no_data_not_a_pass(prom: PrometheusServer) -> None:
    # Counters exist but stand still: every ratio is 0/0 = NaN.
    report = settled(spec(prom, warn=()), "idle", expect_no_data=3)
    assert [r.verdict for r in report.rollback] == [Verdict.NO_DATA] * 3
    assert all("NaN" in r.detail for r in report.rollback), report.rollback


@pytest.mark.parametrize(
    ("namespace", "verdict", "difference"),
    [("shadow-worse", Verdict.BREACH, 0.05), ("shadow-better", Verdict.PASS, -0.05)],
)
def test_shadow_makespan_comparison(
    prom: PrometheusServer, namespace: str, verdict: Verdict, difference: float
) -> None:
    analysis = spec(prom, warn=(), shadow_compare=ShadowCompare(max_makespan_regression=0.0))
    report = settled(analysis, namespace, track="shadow")
    assert report.shadow_compare is not None
    assert report.shadow_compare.verdict is verdict
    assert report.shadow_compare.value == pytest.approx(difference)
    assert verdicts(report.rollback) == {rule.name: Verdict.PASS for rule in ROLLBACK}


def test_a_new_step_is_not_judged_on_the_previous_candidates_answers(
    prom: PrometheusServer, target: MetricsTarget
) -> None:
    """A candidate with longer plans and slow answers served in shadow, then went (its pod's
    counters stop); a good one's shadow step starts under the same track and namespace. The whole
    window still holds mostly the first one's answers and would roll the good one back; the
    window cut at the step's start judges the good one on its own answers."""
    namespace = "shadow-stale"
    old, new = ({"namespace": namespace, "track": "shadow", "pod": p} for p in ("old", "new"))
    contract_traffic(target, old, requests_per_s=50.0, makespan_ratio=1.05, latency_s=12.0)
    contract_traffic(target, {"namespace": namespace, "track": "stable"}, makespan_ratio=1.0)
    analysis = spec(prom, warn=(), shadow_compare=ShadowCompare(max_makespan_regression=0.0))
    assert settled(analysis, namespace, track="shadow").rollback  # the old one's answers are in
    time.sleep(3.0)
    contract_traffic(target, old, requests_per_s=0.0)
    contract_traffic(target, new, makespan_ratio=0.95)
    started = time.time()

    def measured(since: float | None) -> AnalysisReport:
        return analyse(analysis, track="shadow", namespace=namespace, rollout="sched",
                       shadow=True, now=time.time(), since=since, shadow_since=since)  # fmt: skip

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    cut = measured(started)
    while any(r.verdict is Verdict.NO_DATA for r in results(cut)):
        assert time.monotonic() < deadline, results(cut)  # held (no data) until then
        time.sleep(0.5)
        cut = measured(started)
    whole = measured(None)
    assert cut.shadow_compare is not None and whole.shadow_compare is not None
    assert cut.shadow_compare.verdict is Verdict.PASS, cut.shadow_compare
    assert cut.shadow_compare.value == pytest.approx(-0.05)
    assert verdicts(cut.rollback) == {rule.name: Verdict.PASS for rule in ROLLBACK}
    assert whole.shadow_compare.verdict is Verdict.BREACH, whole.shadow_compare
    assert verdicts(whole.rollback)["latency-p95-seconds"] is Verdict.BREACH


def test_the_provider_reports_what_prometheus_cannot_answer_with_one_number(
    prom: PrometheusServer,
) -> None:
    with PrometheusProvider(prom.url) as provider:
        several = provider.query(f'sum by (track) (scheduler_jobs_requested_total{{job="{JOB}"}})')
        broken = provider.query("sum(rate(scheduler_requests_total[1m])")
        single = provider.query(f'count(up{{job="{JOB}"}})')
    assert isinstance(several, NoData)
    assert several.reason.endswith("series, expected 1")
    assert isinstance(broken, NoData)
    assert broken.bad_query
    assert "HTTP 400" in broken.reason
    assert single == 1.0
