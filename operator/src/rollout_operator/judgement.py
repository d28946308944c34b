"""One analysis round judged against the rollout's rules: counters, warnings, a rollback verdict.

Pure functions over the model's values, used by the state machine. The analysis measured and
evaluated each rule already (`MetricResult.verdict`); what is decided here is what a *sequence*
of rounds means: consecutive breaches against ``for``, consecutive rounds without data against
the no-data policy, warnings that start and end, and the words a human reads in the status.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollout_operator.model import (
    SEQUENTIAL_CHECK,
    AnalysisReport,
    Comparison,
    Counters,
    MetricResult,
    NoDataPolicy,
    Phase,
    RolloutSpec,
    Verdict,
)

SHADOW_CHECK = "shadowCompare"  # the shadow comparison's name when the report has no result


@dataclass(frozen=True)
class Check:
    """A rollback check of one round: the rule's name and ``for``, and its result if any."""

    name: str
    for_: int
    result: MetricResult | None

    @property
    def verdict(self) -> Verdict:
        return self.result.verdict if self.result is not None else Verdict.NO_DATA


@dataclass(frozen=True)
class Judgement:
    counters: Counters
    active_warnings: tuple[str, ...]  # warn rules in breach (a round without data keeps them)
    warning_message: str  # the active warnings in words ("" when none)
    started: tuple[str, ...] = ()  # warnings that began this round, in words
    cleared: tuple[str, ...] = ()  # warnings that ended this round, in words
    rollback: tuple[str, str] | None = None  # (reason, condition reason) when it must roll back


def checks(spec: RolloutSpec, report: AnalysisReport, phase: Phase) -> list[Check]:
    """The rollback checks of a round in spec order: the rules, then (in shadow) the comparison."""
    results = {r.name: r for r in report.rollback}
    found = [Check(r.name, r.for_, results.get(r.name)) for r in spec.analysis.rollback]
    if phase is Phase.SHADOW and spec.analysis.shadow_compare is not None:
        shadow = report.shadow_compare
        found.append(Check(shadow.name if shadow else SHADOW_CHECK, 1, shadow))
    return found


def lacking(found: list[Check]) -> list[str]:
    """The checks without data, with the reason when the analysis gave one."""
    return [
        c.name + (f" ({c.result.detail})" if c.result and c.result.detail else "")
        for c in found
        if c.verdict is Verdict.NO_DATA
    ]


def judge(
    spec: RolloutSpec,
    counters: Counters,
    active_warnings: tuple[str, ...],
    report: AnalysisReport,
    phase: Phase,
) -> Judgement:
    """Count this round on top of the previous ones and say whether to roll back."""
    found = checks(spec, report, phase)
    breaches = {}
    for check in found:
        previous = counters.breaches.get(check.name, 0)
        change = {Verdict.PASS: 0, Verdict.BREACH: previous + 1}
        breaches[check.name] = change.get(check.verdict, previous)  # no data: unchanged
    missing = lacking(found)
    no_data = counters.no_data + 1 if missing else 0
    rollback = None
    for check in found:
        count = breaches[check.name]
        if check.result is not None and count >= check.for_:
            plural = "s" if count != 1 else ""
            rollback = (
                f"{describe(check.result)} for {count} interval{plural}",
                "ThresholdBreached",
            )
            if check.name == SEQUENTIAL_CHECK:  # its detail says more than an LLR and a bound
                rollback = (f"candidate worse in shadow: {check.result.detail}", "ShadowWorse")
            break
    analysis = spec.analysis
    out_of_data = analysis.no_data is NoDataPolicy.ROLLBACK and no_data >= analysis.no_data_limit
    if rollback is None and out_of_data:
        reason = f"no data for {no_data} analysis rounds (noData: rollback): "
        rollback = (reason + ", ".join(missing), "NoData")
    return _warnings(spec, active_warnings, report, Counters(breaches, no_data), rollback)


def _warnings(
    spec: RolloutSpec,
    was: tuple[str, ...],
    report: AnalysisReport,
    counters: Counters,
    rollback: tuple[str, str] | None,
) -> Judgement:
    """Warnings are edge-triggered: started and cleared only on a change; no data keeps one."""
    results = {r.name: r for r in report.warn}
    active, texts, started, cleared = [], [], [], []
    for rule in spec.analysis.warn:
        result = results.get(rule.name)
        verdict = result.verdict if result else Verdict.NO_DATA
        if verdict is Verdict.BREACH or (rule.name in was and verdict is Verdict.NO_DATA):
            active.append(rule.name)
            texts.append(describe(result) if result and result.value is not None else rule.name)
            if rule.name not in was and result is not None:
                started.append(describe(result))
        elif rule.name in was and result is not None:
            cleared.append(f"{describe(result)}: back in range")
    return Judgement(
        counters, tuple(active), "; ".join(texts), tuple(started), tuple(cleared), rollback
    )


def hold_reason(
    spec: RolloutSpec, report: AnalysisReport | None, step_started_at: float, phase: Phase
) -> str:
    """Why a timed step may not end although its time is up ("" when it may): it needs a round
    taken after the step began with data for every rollback check."""
    if report is None or report.time <= step_started_at:
        return "no analysis round since the step began"
    missing = lacking(checks(spec, report, phase))
    return f"no data for {', '.join(missing)}" if missing else ""


def health(
    spec: RolloutSpec, report: AnalysisReport | None, counters: Counters, phase: Phase
) -> tuple[str, str, str]:
    """The Healthy condition's status, reason and message from the last round."""
    if report is None:
        return "Unknown", "NotAnalysed", "no analysis round yet"
    found = checks(spec, report, phase)
    breached = [
        f"{describe(c.result)} ({counters.breaches.get(c.name, 0)}/{c.for_})"
        for c in found
        if c.result is not None and c.verdict is Verdict.BREACH
    ]
    if breached:
        return "False", "ThresholdBreached", "; ".join(breached)
    missing = lacking(found)
    if missing:
        return "Unknown", "NoData", f"no data for {', '.join(missing)}"
    return "True", "ChecksPass", f"{len(found)} rollback checks pass"


def num(value: float) -> str:
    """0.9 -> "0.90", 10.0 -> "10", 0.899 -> "0.899", 12.3456 -> "12.35"."""
    if float(value).is_integer():
        return str(int(value))
    two = f"{value:.2f}"
    return two if float(two) == value or abs(value) >= 10 else f"{value:.4g}"


def describe(result: MetricResult) -> str:
    """``completion-rate 0.84 < 0.90`` (``no data`` instead of a value when there is none)."""
    sign = "<" if result.comparison is Comparison.BELOW else ">"
    value = "no data" if result.value is None else num(result.value)
    return f"{result.name} {value} {sign} {num(result.threshold)}"
