"""What the plan says at a step, and when the next time-based change of a rollout is due.

Small pure helpers shared by the state machine and the handlers: the phase and the candidate's
track a step implies, a step's duration, whether an analysis round is due, how long a timer
may sleep before something can change, and when the handlers reconcile a rollout next.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollout_operator.actions import Track
from rollout_operator.model import (
    TERMINAL_PHASES,
    Phase,
    RolloutSpec,
    ShadowStep,
    Step,
    VerifyStep,
    WeightStep,
)
from rollout_operator.status import RolloutStatus

PROGRESS_DEADLINE_S = 600.0  # candidate (or promoted stable) unavailable this long: give up
ANALYSED_PHASES = frozenset({Phase.SHADOW, Phase.CANARY, Phase.AWAITING_APPROVAL})


def track_at(steps: tuple[Step, ...], index: int) -> Track:
    """The candidate's track at step ``index``: ``shadow`` for a verify step (its pods must stay
    out of the stable Service, as a shadow's do, while the Job checks them); else that of the
    nearest traffic step before (or at) it, else the first one after it; ``canary`` for a plan
    of approvals only."""
    if 0 <= index < len(steps) and isinstance(steps[index], VerifyStep):
        return "shadow"
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
    if isinstance(step, VerifyStep):
        return Phase.VERIFYING
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


def analysed_since(status: RolloutStatus, revision: str, now: float) -> float | None:
    """``status.analysedSince`` once the candidate runs ``revision``: from ``now`` when its pod
    template changed mid-attempt (a spec edit, or the track it serves), whose earlier answers
    were another template's; unchanged otherwise, and before the first step."""
    before = status.candidate_revision
    if status.analysed_since is None or not before or before == revision:
        return status.analysed_since
    return now


@dataclass(frozen=True)
class Wakeup:
    """When a rollout is to be reconciled next, and whether that moment is a transition's (a
    step's end, a deadline), whose lateness shows, or a routine one (an analysis round, a poll,
    a resync), which may wait behind it."""

    at: float
    transition: bool = False


def _due_times(
    spec: RolloutSpec, status: RolloutStatus, now: float, progress_deadline_s: float
) -> list[Wakeup]:
    """The time-based changes ahead: an analysis round, a step's end, a deadline (candidate,
    promoted stable, route). Empty for a finished rollout."""
    if status.phase in TERMINAL_PHASES:
        return []
    started = now if status.step_started_at is None else status.step_started_at
    times: list[Wakeup] = []
    if status.phase in ANALYSED_PHASES:
        last = status.last_analysis
        times.append(Wakeup(now if last is None else last.time + spec.analysis.interval_s))
    if status.phase in (Phase.SHADOW, Phase.CANARY) and status.step < len(spec.steps):
        times.append(Wakeup(started + duration_of(spec.steps[status.step]), transition=True))
    if status.phase in (Phase.PENDING, Phase.PROMOTING):
        times.append(Wakeup(started + progress_deadline_s, transition=True))
    for since in (status.candidate_unavailable_since, status.route_pending_since):
        if since is not None:
            times.append(Wakeup(since + progress_deadline_s, transition=True))
    return times


def next_check_in(
    spec: RolloutSpec,
    status: RolloutStatus,
    now: float,
    *,
    progress_deadline_s: float = PROGRESS_DEADLINE_S,
) -> float | None:
    """Seconds until the next time-based change (analysis, step end, deadline); None: none."""
    times = _due_times(spec, status, now, progress_deadline_s)
    return max(0.0, min(t.at for t in times) - now) if times else None


def waits_on_cluster(spec: RolloutSpec, status: RolloutStatus, now: float, poll_s: float) -> bool:
    """Whether the rollout, as a reconcile at ``now`` left it, waits for something only the
    cluster can change, which no timer announces: the candidate (or the promoted stable) to
    become available, the verification Job to finish, the gateway to take the route, an
    analysis round that was due but could not be counted, or the routing of a step that began
    less than ``poll_s`` ago to come into force. Such a rollout is polled (every ``poll_s``);
    any other waits for its next due time."""
    started = status.step_started_at
    return (
        status.phase in (Phase.PENDING, Phase.VERIFYING, Phase.PROMOTING)
        or status.candidate_unavailable_since is not None
        or status.route_pending_since is not None
        or analysis_due(spec, status, now)
        or (started is not None and now - started < poll_s)
    )


def next_reconcile_at(
    spec: RolloutSpec,
    status: RolloutStatus,
    now: float,
    *,
    poll_s: float,
    resync_s: float,
    progress_deadline_s: float = PROGRESS_DEADLINE_S,
) -> Wakeup | None:
    """When to reconcile a rollout next, after a reconcile at ``now`` left it in ``status``;
    None once it is finished (only a command restarts it, and that is an event).

    The next time-based change exactly (a step's end, an analysis round, a deadline), so a
    step ends on its timer and not at the next poll; a moment at or before ``now`` was this
    reconcile's to handle, so only later ones count (a step held for data waits for the next
    round, not in a loop). And no later than ``poll_s`` from now while the rollout waits on the
    cluster (`waits_on_cluster`), ``resync_s`` otherwise: changes of the Deployments and the
    route that no event announces are seen within that bound. A transition's moment shared
    with a routine one counts as the transition's."""
    if status.phase in TERMINAL_PHASES:
        return None
    bound = poll_s if waits_on_cluster(spec, status, now, poll_s) else resync_s
    times = [Wakeup(now + bound), *_due_times(spec, status, now, progress_deadline_s)]
    return min((t for t in times if t.at > now), key=lambda t: (t.at, not t.transition))
