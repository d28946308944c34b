"""One analysis round: render every rule's query, measure it, judge it, report.

Rendering happens first for every rule, so a rule without a query (and no built-in of its name)
or with an unknown placeholder raises ``ValueError`` before anything is measured; the spec
parser runs the same check up front, so a running rollout does not meet it. Measuring never
raises: the provider turns every failure into ``NoData``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from rollout_operator.analysis import sequential
from rollout_operator.analysis.evaluate import evaluate
from rollout_operator.analysis.prometheus import PrometheusProvider
from rollout_operator.analysis.provider import MetricsProvider, NoData
from rollout_operator.analysis.queries import (
    SEQUENTIAL,
    age_range,
    render,
    sequential_rules,
    shadow_rule,
    window_since,
)
from rollout_operator.model import (
    AnalysisReport,
    AnalysisSpec,
    Comparison,
    Decision,
    MetricResult,
    Rule,
    ShadowCompare,
    ShadowTest,
    Verdict,
)


def analyse(
    spec: AnalysisSpec,
    *,
    track: str,
    namespace: str,
    rollout: str,
    shadow: bool,
    now: float,
    provider: MetricsProvider | None = None,
    shadow_since: float | None = None,
    since: float | None = None,
) -> AnalysisReport:
    """Measure ``track`` (``canary`` or ``shadow``) against the spec's rules.

    The shadow comparison runs only when ``shadow`` and the spec asks for it: the mean test
    over the analysis window, or the sequential test over the pairs counted since
    ``shadow_since`` (the shadow step's start). The built-ins' window reaches back no further
    than ``since`` (the attempt's first step, or the candidate template's last change) for the
    rules, and the later of the two for the comparison and the pairs; None leaves it whole.
    ``now`` stamps the report; queries are evaluated at Prometheus' current time. Without
    ``provider`` the spec's Prometheus is queried (and the connection closed afterwards).
    """
    compare_spec = spec.shadow_compare if shadow else None
    is_sequential = compare_spec is not None and compare_spec.test is ShadowTest.SEQUENTIAL
    compare = (shadow_rule(compare_spec),) if compare_spec and not is_sequential else ()
    shadow_start = (
        shadow_since if shadow_since is None or since is None else max(shadow_since, since)
    )
    age = age_range(0.0 if shadow_start is None else now - shadow_start)

    def cut(start: float | None) -> str | None:
        return None if start is None else window_since(spec.interval_s, now - start)

    def plan(rules: tuple[Rule, ...], range_: str | None = None) -> list[tuple[Rule, str]]:
        return [
            (rule, render(rule, track, namespace, rollout, spec.interval_s, range_=range_))
            for rule in rules
        ]

    # Every query is rendered before any is measured: a ValueError comes before I/O.
    rules_range = cut(since)
    planned = [
        plan(spec.rollback, rules_range),
        plan(spec.warn, rules_range),
        plan(compare, cut(shadow_start)),
    ]
    pairs = plan(sequential_rules(), age) if is_sequential else []
    if provider is not None:
        return _report(now, provider, planned, pairs, compare_spec)
    with PrometheusProvider(spec.prometheus_url) as own:
        return _report(now, own, planned, pairs, compare_spec)


def _report(
    now: float,
    provider: MetricsProvider,
    planned: list[list[tuple[Rule, str]]],
    pairs: list[tuple[Rule, str]],
    compare_spec: ShadowCompare | None,
) -> AnalysisReport:
    rollback, warn, compare = (
        tuple(_measure(provider, rule, promql) for rule, promql in group) for group in planned
    )
    report = AnalysisReport(
        time=now, rollback=rollback, warn=warn, shadow_compare=compare[0] if compare else None
    )
    if pairs and compare_spec is not None:
        measured = [provider.query(promql) for _, promql in pairs]
        report = _sequential(report, measured, compare_spec)
    return report


def _sequential(
    report: AnalysisReport, measured: list[float | NoData], compare: ShadowCompare
) -> AnalysisReport:
    """The sequential verdict as the round's shadow check: ``worse`` is a breach; ``notWorse``
    and ``better`` pass, and so does ``undecided`` once ``minSamples`` pairs are in (the step
    may then end on its duration); fewer undecided pairs are no data, which holds the step.
    No pair series at all (stable pods without the app mirror's pair counts) is no data."""
    *counts, ratio = measured
    upper = sequential.bounds(compare.alpha, compare.beta)[1]

    def result(verdict: Verdict, value: float | None, detail: str) -> MetricResult:
        return MetricResult(SEQUENTIAL, value, upper, Comparison.ABOVE, verdict, detail)

    if all(isinstance(c, NoData) for c in counts):
        reason = counts[0].reason if isinstance(counts[0], NoData) else ""
        detail = f"{SEQUENTIAL}: no data (no paired outcomes: {reason})"
        return replace(report, shadow_compare=result(Verdict.NO_DATA, None, detail))
    worse, better, equal = (0.0 if isinstance(c, NoData) or not math.isfinite(c) else c
                            for c in counts)  # fmt: skip
    mean_ratio = ratio if isinstance(ratio, float) and math.isfinite(ratio) else None
    verdict = sequential.decide(
        worse, better, equal, alpha=compare.alpha, beta=compare.beta, effect=compare.effect,
        mean_ratio=mean_ratio,
    )  # fmt: skip
    text = f"{SEQUENTIAL} {sequential.describe(verdict)}"
    if verdict.decision is Decision.WORSE:
        judged = Verdict.BREACH
    elif verdict.decision is not Decision.UNDECIDED or verdict.pairs >= compare.min_samples:
        judged = Verdict.PASS
    else:
        judged = Verdict.NO_DATA
        text += f" (fewer than minSamples {compare.min_samples} pairs)"
    return replace(report, shadow_compare=result(judged, verdict.llr, text), sequential=verdict)


def _measure(provider: MetricsProvider, rule: Rule, promql: str) -> MetricResult:
    return evaluate(rule, provider.query(promql))
