"""What the plan says at a step, and when the next time-based change of a rollout is due.

Small pure helpers shared by the state machine and the handlers: the phase and the candidate's
track a step implies, a step's duration, whether an analysis round is due, and how long a timer
may sleep before something can change.
"""

from __future__ import annotations

from rollout_operator.actions import Track
from rollout_operator.model import (
    TERMINAL_PHASES,
    Phase,
    RolloutSpec,
    ShadowStep,
    Step,
    WeightStep,
)
from rollout_operator.status import RolloutStatus

PROGRESS_DEADLINE_S = 600.0  # candidate (or promoted stable) unavailable this long: give up
ANALYSED_PHASES = frozenset({Phase.SHADOW, Phase.CANARY, Phase.AWAITING_APPROVAL})


def track_at(steps: tuple[Step, ...], index: int) -> Track:
    """The candidate's track at step ``index``: that of the nearest traffic step before (or at)
    it, else the first one after it; ``canary`` for a plan of approvals only."""
    ordered = [*reversed(steps[: index + 1]), *steps[index + 1 :]]
    for step in ordered:
        if isinstance(step, ShadowStep):
            return "shadow"
        if isinstance(step, WeightStep):
            return "canary"
    return "canary"


def phase_of(step: Step) -> Phase:
    """The phase a rollout is in during ``step``."""
    if isinstance(step, ShadowStep):
        return Phase.SHADOW
    return Phase.CANARY if isinstance(step, WeightStep) else Phase.AWAITING_APPROVAL


def duration_of(step: Step) -> float:
    """A timed step's duration in seconds; 0 for an approval."""
    return step.duration_s if isinstance(step, ShadowStep | WeightStep) else 0.0


def analysis_due(spec: RolloutSpec, status: RolloutStatus, now: float) -> bool:
    """Whether an analysis round should run now (the interval is counted from the last one)."""
    if status.phase not in ANALYSED_PHASES:
        return False
    last = status.last_analysis
    return last is None or now - last.time >= spec.analysis.interval_s


def next_check_in(
    spec: RolloutSpec,
    status: RolloutStatus,
    now: float,
    *,
    progress_deadline_s: float = PROGRESS_DEADLINE_S,
) -> float | None:
    """Seconds until the next time-based change (analysis, step end, deadline); None: none."""
    if status.phase in TERMINAL_PHASES:
        return None
    started = now if status.step_started_at is None else status.step_started_at
    times: list[float] = []
    if status.phase in ANALYSED_PHASES:
        last = status.last_analysis
        times.append(now if last is None else last.time + spec.analysis.interval_s)
    if status.phase in (Phase.SHADOW, Phase.CANARY) and status.step < len(spec.steps):
        times.append(started + duration_of(spec.steps[status.step]))
    if status.phase in (Phase.PENDING, Phase.PROMOTING):
        times.append(started + progress_deadline_s)
    if status.candidate_unavailable_since is not None:
        times.append(status.candidate_unavailable_since + progress_deadline_s)
    return max(0.0, min(times) - now) if times else None
