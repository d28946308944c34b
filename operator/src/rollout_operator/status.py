"""The rollout's progress as the CR's ``status``: a frozen value and its JSON, both ways.

All progress lives in the status (restart safety): the phase, the step and when it started, the
breach and no-data counters, the active warnings, the last analysis round. ``to_dict`` writes
every field (``None`` as ``null``, which a merge patch reads as "remove"), so writing it as one
merge patch never leaves a stale value behind; ``from_dict`` reads what ``to_dict`` wrote, and
missing fields as their defaults (a new rollout has no status at all).

Times are RFC 3339 strings in UTC with microseconds; the state machine rounds ``now`` to whole
microseconds, so ``from_dict(to_dict(s)) == s`` holds exactly.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout_operator.model import (
    AnalysisReport,
    Comparison,
    Counters,
    Decision,
    MetricResult,
    Phase,
    SequentialVerdict,
    Verdict,
)

# Condition types (Kubernetes convention: CamelCase, status "True" | "False" | "Unknown").
PROGRESSING = "Progressing"
HEALTHY = "Healthy"
WARNING = "Warning"
APPROVED = "Approved"
ROLLED_BACK = "RolledBack"
ROUTE_ACCEPTED = "RouteAccepted"
VERIFIED = "Verified"

HISTORY_LIMIT = 50  # phase and step changes kept in the status (the report's timeline)


@dataclass(frozen=True)
class HistoryEntry:
    """A phase or step the rollout entered: when, at what traffic, and why."""

    phase: Phase
    step: int
    weight: int
    mirror_percent: int
    at: float
    reason: str
    message: str = ""


@dataclass(frozen=True)
class SignOffRecord:
    """A role's sign-off the operator counted: at which step, by whom, when."""

    step: int
    role: str
    user: str
    at: float


@dataclass(frozen=True)
class Verification:
    """The verify step's Job: its name, whether the operator created it (an absent Job that
    was created was deleted), its state, and the figures its container reported."""

    job: str
    step: int
    started_at: float
    state: str = "Creating"  # Creating | Waiting | Running | Passed | Failed
    created: bool = False
    started: bool = False  # a container of the Job ran (a Job that never starts ends clearly)
    reason: str = ""
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    last_transition: float = 0.0


@dataclass(frozen=True)
class RolloutStatus:
    phase: Phase = Phase.PENDING
    step: int = 0  # index into spec.steps; the last step stays while Promoting and after
    weight: int = 0  # % of real traffic the candidate serves
    mirror_percent: int = 0  # % of requests mirrored to the shadow candidate
    step_started_at: float | None = None  # when the current step (or Pending, Promoting) began
    # When this attempt's first step began, or the candidate's pod template last changed in it:
    # the analysis reads no sample from before (another candidate's or template's pods reported
    # under the same track and namespace).
    analysed_since: float | None = None
    candidate_unavailable_since: float | None = None
    route_pending_since: float | None = None  # the step's routing written, not yet in force
    counters: Counters = field(default_factory=Counters)
    active_warnings: tuple[str, ...] = ()  # warn rules in breach now (events are edge-triggered)
    rollback_reason: str = ""
    conditions: tuple[Condition, ...] = ()
    last_analysis: AnalysisReport | None = None
    message: str = ""
    # Written by the caller, carried through by the state machine:
    stable_revision: str = ""
    candidate_revision: str = ""
    observed_generation: int | None = None
    last_command: str = ""  # the command annotation value last acted on (commands.py)
    history: tuple[HistoryEntry, ...] = ()
    sign_offs: tuple[SignOffRecord, ...] = ()  # counted sign-offs, all steps, this attempt
    # role -> the sign-off annotation's value when the current approval step began: only a
    # value other than this one is a sign-off for this step.
    approval_baseline: dict[str, str] = field(default_factory=dict)
    verification: Verification | None = None
    shadow_verdict: SequentialVerdict | None = None
    gate: str = ""  # what the current step waits for, in a few words (a printer column)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "step": self.step,
            "weight": self.weight,
            "mirrorPercent": self.mirror_percent,
            "stepStartedAt": _time_or_none(self.step_started_at),
            "analysedSince": _time_or_none(self.analysed_since),
            "candidateUnavailableSince": _time_or_none(self.candidate_unavailable_since),
            "routePendingSince": _time_or_none(self.route_pending_since),
            "counters": {"breaches": dict(self.counters.breaches), "noData": self.counters.no_data},
            "activeWarnings": list(self.active_warnings),
            "rollbackReason": self.rollback_reason,
            "conditions": [_condition_to_dict(c) for c in self.conditions],
            "lastAnalysis": _report_to_dict(self.last_analysis) if self.last_analysis else None,
            "message": self.message,
            "stableRevision": self.stable_revision,
            "candidateRevision": self.candidate_revision,
            "observedGeneration": self.observed_generation,
            "lastCommand": self.last_command,
            "history": [_history_to_dict(h) for h in self.history],
            "signOffs": [
                {"step": o.step, "role": o.role, "user": o.user, "at": format_time(o.at)}
                for o in self.sign_offs
            ],
            # a list, not a map: a merge patch replaces a list, but merges a map's keys
            "approvalBaseline": [
                {"role": role, "value": value} for role, value in self.approval_baseline.items()
            ],
            "verification": _verification_to_dict(self.verification),
            "shadowVerdict": _verdict_to_dict(self.shadow_verdict),
            "gate": self.gate,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RolloutStatus:
        """The status ``to_dict`` wrote; ValueError naming a field it cannot read."""
        data = data or {}
        counters = data.get("counters") or {}
        analysis = data.get("lastAnalysis")
        generation = data.get("observedGeneration")
        return cls(
            phase=Phase(data.get("phase") or Phase.PENDING.value),
            step=int(data.get("step") or 0),
            weight=int(data.get("weight") or 0),
            mirror_percent=int(data.get("mirrorPercent") or 0),
            step_started_at=_parse_or_none(data.get("stepStartedAt")),
            analysed_since=_parse_or_none(data.get("analysedSince")),
            candidate_unavailable_since=_parse_or_none(data.get("candidateUnavailableSince")),
            route_pending_since=_parse_or_none(data.get("routePendingSince")),
            counters=Counters(
                breaches={str(k): int(v) for k, v in (counters.get("breaches") or {}).items()},
                no_data=int(counters.get("noData") or 0),
            ),
            active_warnings=tuple(str(n) for n in data.get("activeWarnings") or ()),
            rollback_reason=str(data.get("rollbackReason") or ""),
            conditions=tuple(_condition_from_dict(c) for c in data.get("conditions") or ()),
            last_analysis=_report_from_dict(analysis) if analysis else None,
            message=str(data.get("message") or ""),
            stable_revision=str(data.get("stableRevision") or ""),
            candidate_revision=str(data.get("candidateRevision") or ""),
            observed_generation=None if generation is None else int(generation),
            last_command=str(data.get("lastCommand") or ""),
            history=tuple(_history_from_dict(h) for h in data.get("history") or ()),
            sign_offs=tuple(
                SignOffRecord(int(o["step"]), str(o["role"]), str(o["user"]), parse_time(o["at"]))
                for o in data.get("signOffs") or ()
            ),
            approval_baseline={
                str(b["role"]): str(b["value"]) for b in data.get("approvalBaseline") or ()
            },
            verification=_verification_from_dict(data.get("verification")),
            shadow_verdict=_verdict_from_dict(data.get("shadowVerdict")),
            gate=str(data.get("gate") or ""),
        )


def set_condition(
    conditions: tuple[Condition, ...],
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: float,
) -> tuple[Condition, ...]:
    """``conditions`` with ``type_`` set; its transition time changes only when its status does."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition if old is not None and old.status == status else stamp(now)
    new = Condition(type_, status, reason, message, since)
    if old is None:
        return (*conditions, new)
    return tuple(new if c.type == type_ else c for c in conditions)


# --- times --------------------------------------------------------------------------------------


def stamp(epoch: float) -> float:
    """``epoch`` rounded to whole microseconds: what a status time holds after a round trip."""
    return round(epoch, 6)


def format_time(epoch: float) -> str:
    """RFC 3339 in UTC: ``2026-01-02T03:04:05.123456Z`` (no fraction when there is none)."""
    moment = dt.datetime.fromtimestamp(stamp(epoch), dt.UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(text: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _time_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else format_time(epoch)


def _parse_or_none(text: Any) -> float | None:
    return None if text in (None, "") else parse_time(text)


# --- nested values ------------------------------------------------------------------------------


def _condition_to_dict(c: Condition) -> dict[str, Any]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": format_time(c.last_transition),
    }


def _condition_from_dict(data: Mapping[str, Any]) -> Condition:
    return Condition(
        type=str(data["type"]),
        status=str(data.get("status") or "Unknown"),
        reason=str(data.get("reason") or ""),
        message=str(data.get("message") or ""),
        last_transition=parse_time(data["lastTransitionTime"])
        if data.get("lastTransitionTime")
        else 0.0,
    )


def _report_to_dict(report: AnalysisReport) -> dict[str, Any]:
    metrics = [_metric_to_dict(r, "rollback") for r in report.rollback]
    metrics += [_metric_to_dict(r, "warn") for r in report.warn]
    if report.shadow_compare is not None:
        metrics.append(_metric_to_dict(report.shadow_compare, "shadowCompare"))
    return {"time": format_time(report.time), "metrics": metrics}


def _metric_to_dict(result: MetricResult, kind: str) -> dict[str, Any]:
    value = result.value
    return {
        "name": result.name,
        "kind": kind,
        "value": value if value is not None and math.isfinite(value) else None,
        "threshold": result.threshold,
        "comparison": result.comparison.value,
        "verdict": result.verdict.value,
        "detail": result.detail,
    }


def _report_from_dict(data: Mapping[str, Any]) -> AnalysisReport:
    kinds: dict[str, list[MetricResult]] = {"rollback": [], "warn": [], "shadowCompare": []}
    for item in data.get("metrics") or ():
        value = item.get("value")
        kinds[item.get("kind", "rollback")].append(
            MetricResult(
                name=str(item["name"]),
                value=None if value is None else float(value),
                threshold=float(item.get("threshold", 0.0)),
                comparison=Comparison(item.get("comparison", Comparison.ABOVE.value)),
                verdict=Verdict(item.get("verdict", Verdict.NO_DATA.value)),
                detail=str(item.get("detail") or ""),
            )
        )
    shadow = kinds["shadowCompare"]
    return AnalysisReport(
        time=parse_time(data["time"]),
        rollback=tuple(kinds["rollback"]),
        warn=tuple(kinds["warn"]),
        shadow_compare=shadow[0] if shadow else None,
    )


def _history_to_dict(h: HistoryEntry) -> dict[str, Any]:
    return {
        "phase": h.phase.value,
        "step": h.step,
        "weight": h.weight,
        "mirrorPercent": h.mirror_percent,
        "at": format_time(h.at),
        "reason": h.reason,
        "message": h.message,
    }


def _history_from_dict(data: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        phase=Phase(data["phase"]),
        step=int(data.get("step") or 0),
        weight=int(data.get("weight") or 0),
        mirror_percent=int(data.get("mirrorPercent") or 0),
        at=parse_time(data["at"]),
        reason=str(data.get("reason") or ""),
        message=str(data.get("message") or ""),
    )


def _verification_to_dict(v: Verification | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "job": v.job,
        "step": v.step,
        "startedAt": format_time(v.started_at),
        "state": v.state,
        "created": v.created,
        "started": v.started,
        "reason": v.reason,
        "result": v.result,
    }


def _verification_from_dict(data: Mapping[str, Any] | None) -> Verification | None:
    if not data:
        return None
    result = data.get("result")
    return Verification(
        job=str(data["job"]),
        step=int(data.get("step") or 0),
        started_at=parse_time(data["startedAt"]),
        state=str(data.get("state") or "Creating"),
        created=bool(data.get("created")),
        started=bool(data.get("started")),
        reason=str(data.get("reason") or ""),
        result=dict(result) if isinstance(result, Mapping) else None,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _verdict_to_dict(v: SequentialVerdict | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "pairs": v.pairs,
        "worse": v.worse,
        "better": v.better,
        "equal": v.equal,
        "decision": v.decision.value,
        "llr": _finite(v.llr),
        "estimate": _finite(v.estimate),
        "ciLow": _finite(v.ci_low),
        "ciHigh": _finite(v.ci_high),
        "meanRatio": _finite(v.mean_ratio),
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _verdict_from_dict(data: Mapping[str, Any] | None) -> SequentialVerdict | None:
    if not data:
        return None
    return SequentialVerdict(
        worse=int(data.get("worse") or 0),
        better=int(data.get("better") or 0),
        equal=int(data.get("equal") or 0),
        decision=Decision(data.get("decision") or Decision.UNDECIDED.value),
        llr=float(data.get("llr") or 0.0),
        estimate=_optional_float(data.get("estimate")),
        ci_low=_optional_float(data.get("ciLow")),
        ci_high=_optional_float(data.get("ciHigh")),
        mean_ratio=_optional_float(data.get("meanRatio")),
    )
