"""One analysis round: render every rule's query, measure it, judge it, report.

Rendering happens first for every rule, so a rule without a query (and no built-in of its name)
or with an unknown placeholder raises ``ValueError`` before anything is measured; the spec
parser runs the same check up front, so a running rollout does not meet it. Measuring never
raises: the provider turns every failure into ``NoData``.
"""

from __future__ import annotations

from rollout_operator.analysis.evaluate import evaluate
from rollout_operator.analysis.prometheus import PrometheusProvider
from rollout_operator.analysis.provider import MetricsProvider
from rollout_operator.analysis.queries import render, shadow_rule
from rollout_operator.model import AnalysisReport, AnalysisSpec, MetricResult, Rule


def analyse(
    spec: AnalysisSpec,
    *,
    track: str,
    namespace: str,
    rollout: str,
    shadow: bool,
    now: float,
    provider: MetricsProvider | None = None,
) -> AnalysisReport:
    """Measure ``track`` (``canary`` or ``shadow``) against the spec's rules.

    The shadow makespan comparison runs only when ``shadow`` and the spec asks for it. ``now``
    stamps the report; queries are evaluated at Prometheus' current time. Without ``provider``
    the spec's Prometheus is queried (and the connection closed afterwards).
    """
    compare = (shadow_rule(spec.shadow_compare),) if shadow and spec.shadow_compare else ()

    def plan(rules: tuple[Rule, ...]) -> list[tuple[Rule, str]]:
        return [(rule, render(rule, track, namespace, rollout, spec.interval_s)) for rule in rules]

    planned = [plan(spec.rollback), plan(spec.warn), plan(compare)]  # ValueError before I/O
    if provider is not None:
        return _report(now, provider, planned)
    with PrometheusProvider(spec.prometheus_url) as own:
        return _report(now, own, planned)


def _report(
    now: float, provider: MetricsProvider, planned: list[list[tuple[Rule, str]]]
) -> AnalysisReport:
    rollback, warn, compare = (
        tuple(_measure(provider, rule, promql) for rule, promql in group) for group in planned
    )
    return AnalysisReport(
        time=now, rollback=rollback, warn=warn, shadow_compare=compare[0] if compare else None
    )


def _measure(provider: MetricsProvider, rule: Rule, promql: str) -> MetricResult:
    return evaluate(rule, provider.query(promql))
