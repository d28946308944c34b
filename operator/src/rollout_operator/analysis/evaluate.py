"""The one evaluator: a rule and a measurement in, a verdict out.

Providers only measure; this is the single place that decides pass, breach or no data, so the
semantics are the same for every provider and every rule. No data (an empty result, NaN, a
provider error) is its own verdict: it is never a pass (so missing data cannot promote) and
never a breach (so an outage of the monitoring cannot roll back a healthy candidate). A value
exactly at the threshold passes: ``below: 0.90`` breaches at 0.8999, not at 0.90.
"""

from __future__ import annotations

import math

from rollout_operator.analysis.provider import NoData
from rollout_operator.model import Comparison, MetricResult, Rule, Verdict

_SYMBOL = {Comparison.BELOW: "<", Comparison.ABOVE: ">"}
_OPPOSITE = {Comparison.BELOW: ">=", Comparison.ABOVE: "<="}


def breached(comparison: Comparison, value: float, threshold: float) -> bool:
    if comparison is Comparison.BELOW:
        return value < threshold
    return value > threshold


def evaluate(rule: Rule, measured: float | NoData) -> MetricResult:
    """Judge one measurement of ``rule``; ``detail`` says why, in words a status can show."""
    if isinstance(measured, NoData):
        return _no_data(rule, measured.reason)
    if not math.isfinite(measured):
        return _no_data(rule, f"value {measured} is not a finite number")
    breach = breached(rule.comparison, measured, rule.threshold)
    symbol = _SYMBOL[rule.comparison] if breach else _OPPOSITE[rule.comparison]
    return MetricResult(
        name=rule.name,
        value=measured,
        threshold=rule.threshold,
        comparison=rule.comparison,
        verdict=Verdict.BREACH if breach else Verdict.PASS,
        detail=f"{rule.name} {_number(measured)} {symbol} {_number(rule.threshold)}",
    )


def _no_data(rule: Rule, reason: str) -> MetricResult:
    return MetricResult(
        name=rule.name,
        value=None,
        threshold=rule.threshold,
        comparison=rule.comparison,
        verdict=Verdict.NO_DATA,
        detail=f"{rule.name}: no data ({reason})",
    )


def _number(value: float) -> str:
    return f"{value:.4g}"
