"""Rendering: built-ins by rule name, placeholders substituted in user queries too."""

from __future__ import annotations

import re

import pytest

from rollout_operator.analysis.queries import (
    BUILTIN_QUERIES,
    SHADOW_COMPARE,
    render,
    shadow_rule,
    window,
    window_since,
)
from rollout_operator.model import Comparison, Rule, ShadowCompare

pytestmark = pytest.mark.unit


def rule(name: str, query: str = "") -> Rule:
    return Rule(name, query, Comparison.ABOVE, 1.0)


@pytest.mark.parametrize(
    ("interval_s", "expected"),
    [(1, "60s"), (10, "60s"), (30, "60s"), (30.2, "61s"), (60, "120s"), (300, "600s")],
)
def test_window_is_twice_the_interval_but_at_least_a_minute(
    interval_s: float, expected: str
) -> None:
    assert window(interval_s) == expected


@pytest.mark.parametrize(
    ("interval_s", "age_s", "expected"),
    [(30, 600, "60s"), (30, 60, "60s"), (30, 12.2, "12200ms"), (30, 0.0, "1ms"), (30, -3.0, "1ms"),
     (300, 200.0004, "200000ms")],
)  # fmt: skip
def test_the_window_since_reaches_back_no_further_than_the_evidence(
    interval_s: float, age_s: float, expected: str
) -> None:
    assert window_since(interval_s, age_s) == expected


@pytest.mark.parametrize("name", sorted(BUILTIN_QUERIES))
def test_every_built_in_renders_completely(name: str) -> None:
    promql = render(rule(name), "canary", "plant-a", "sched", 60)
    assert "{{" not in promql
    assert "}}" not in promql.replace("}}[", "")  # no placeholder left (label sets may close)
    assert 'namespace="plant-a"' in promql
    assert promql.count("(") == promql.count(")")


def test_completion_rate_divides_scheduled_by_requested_jobs() -> None:
    promql = " ".join(render(rule("completion-rate"), "canary", "ns", "r", 30).split())
    assert promql == (
        'sum(rate( scheduler_jobs_scheduled_total{track="canary", namespace="ns"}[60s] )) / '
        'sum(rate( scheduler_jobs_requested_total{track="canary", namespace="ns"}[60s] ))'
    )


def test_latency_is_the_95th_percentile_of_the_duration_histogram() -> None:
    promql = " ".join(render(rule("latency-p95-seconds"), "shadow", "ns", "r", 90).split())
    assert promql.startswith("histogram_quantile(0.95, sum by (le) (rate(")
    assert "scheduler_request_duration_seconds_bucket{" in promql
    assert 'track="shadow"' in promql
    assert "[180s]" in promql


def test_error_rate_counts_every_code_but_ok() -> None:
    promql = render(rule("error-rate"), "canary", "ns", "r", 30)
    assert 'code!="OK"' in promql
    assert "or vector(0)" in promql
    assert promql.count("scheduler_requests_total{") == 2


def test_memory_utilisation_selects_the_tracks_pods_through_their_labels() -> None:
    promql = render(rule("memory-utilisation"), "canary", "ns", "r", 30)
    for series in (
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_limits",
        'kube_pod_labels{namespace="ns", label_track="canary"}',
    ):
        assert series in promql


def test_shadow_comparison_subtracts_stables_mean_ratio_from_the_candidates() -> None:
    compare = shadow_rule(ShadowCompare(max_makespan_regression=0.01))
    assert (compare.name, compare.comparison, compare.threshold) == (
        SHADOW_COMPARE,
        Comparison.ABOVE,
        0.01,
    )
    promql = render(compare, "shadow", "ns", "r", 30)
    comparison, enough = promql.split("\nand on ()\n")
    candidate, stable = comparison.split("\n-\n")
    assert re.findall(r'track="(\w+)"', candidate) == ["shadow", "shadow"]
    assert re.findall(r'track="(\w+)"', stable) == ["stable", "stable"]
    assert "scheduler_makespan_ratio_sum" in stable
    assert "scheduler_makespan_ratio_count" in stable
    # no verdict on a handful of schedules: the comparison needs 20 answers in the window
    assert re.findall(r'track="(\w+)"', enough) == ["shadow"]
    assert ">= 20" in enough


def test_a_custom_shadow_query_is_used_as_given() -> None:
    compare = shadow_rule(ShadowCompare(query='my_regression{track="{{track}}"}'))
    assert render(compare, "shadow", "ns", "r", 30) == 'my_regression{track="shadow"}'


def test_user_queries_get_every_placeholder_substituted() -> None:
    query = (
        'sum(rate(x{track="{{track}}", namespace="{{ namespace }}", app="{{rollout}}"}'
        "[{{window}}]))"
    )
    assert render(rule("custom", query), "canary", "plant", "sched", 45) == (
        'sum(rate(x{track="canary", namespace="plant", app="sched"}[90s]))'
    )


def test_a_user_query_wins_over_the_built_in_of_the_same_name() -> None:
    assert render(rule("completion-rate", "vector(1)"), "canary", "n", "r", 30) == "vector(1)"


def test_unknown_placeholder_is_an_error_naming_rule_and_placeholder() -> None:
    with pytest.raises(ValueError, match=r"'custom'.*\{\{trak\}\}"):
        render(rule("custom", 'x{track="{{trak}}"}'), "canary", "n", "r", 30)


def test_unknown_name_without_query_is_an_error_listing_the_built_ins() -> None:
    with pytest.raises(ValueError, match=r"'cpu'.*completion-rate"):
        render(rule("cpu"), "canary", "n", "r", 30)
    with pytest.raises(ValueError, match="'cpu'"):
        render(rule("cpu", "   "), "canary", "n", "r", 30)
