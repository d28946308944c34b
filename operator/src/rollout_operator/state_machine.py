"""The whole rollout logic as one pure function: ``advance(spec, status, now, ...)``.

Inputs: the typed spec, the current status, the time, the latest analysis report (or None), the
human commands, whether the candidate and the stable Deployments are available, whether the
router sizes the candidate itself (``Router.sizes_candidate``) and whether the routing it wrote
is in force (``Router.acceptance``). Output: the new status and the
actions (`actions.py`) that make the world match it. No Kubernetes, no Prometheus, no clock:
every rule below holds, and can be checked, without a cluster.

The rules, precisely:

- **Pending**: ensure the candidate (track of the first traffic step); once it is available,
  enter step 0. Not available within the progress deadline: Failed.
- **Steps**: a shadow step sets weight 0 and mirrors ``percent`` % of requests; a weight step
  sets ``weight`` % and no mirror; an approval step keeps the traffic as it is and waits in
  AwaitingApproval for ``approve`` (or ``promote``). A timed step ends when its duration,
  counted from ``stepStartedAt`` in the status (so a restart resumes with the remaining time), has
  elapsed **and** the candidate is available **and** an analysis round taken after the step
  began had data for every rollback rule (and for the shadow comparison during shadow). Missing
  data therefore never completes a step, under either no-data policy: ``hold`` waits for data
  (no extension: data coming back after the duration ends the step at once), ``rollback`` also
  rolls back after ``noDataLimit`` consecutive rounds without data. One step per call; the next
  step starts at ``now``, so a late reconcile never skips or repeats a step.
- **Traffic follows availability** (unless the router sizes the candidate): the candidate gets
  its step's weight and mirror only while it is available; entering a step whose track differs
  (shadow to canary) rolls its pods and sets no traffic until the new pods are available, so no
  call reaches a pod that is gone or one still labelled with the old track. A router that sizes
  the candidate always gets the step's traffic: its pods come from that call.
- **A weight counts once the gateway took it**: while the route's gateways have not accepted
  its current generation (or rejected it), a step neither ends nor counts analysis rounds, and
  its duration starts over when the route comes into force (``routePendingSince`` in the status,
  condition ``RouteAccepted`` with the gateway's words). Not in force within the progress
  deadline: rolled back. A route no gateway reports on is in force as written.
- **Analysis** (Shadow, Canary, AwaitingApproval, while the candidate is available; a report not
  newer than ``lastAnalysis`` is ignored, so a report is counted once): per rollback rule, a breach
  adds one to its counter, a pass resets it, no data leaves it; a round with no data for any rule
  adds one to ``counters.noData``, a round with all data resets it. A counter reaching the rule's
  ``for`` rolls back; so does a shadow-comparison breach (``for`` 1). Warnings are edge-triggered:
  an Event when a warn rule starts breaching, another when it passes again; no data changes
  nothing.
- **Rollback**: traffic 0 and mirror off, candidate scaled to zero but kept, RolledBack.
- **Promoting**: the stable Deployment takes the candidate's spec; once the caller reports it
  available (rolled out with the new template), traffic 0 and the candidate is removed:
  Succeeded. Not available within the progress deadline: Failed (traffic left as it is).
- **Commands**: ``abort`` rolls back (not while Promoting); ``promote`` skips to Promoting;
  ``approve`` counts only in AwaitingApproval; ``retry`` restarts a RolledBack, Failed or
  Invalid rollout from Pending with cleared counters. A command that does not apply is a no-op.
- Terminal phases change only by ``retry``. Every phase change emits an Event (and a webhook
  notification when one is configured), and so does every step change.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from rollout_operator import durations, judgement
from rollout_operator.actions import (
    Action,
    Announcement,
    Effect,
    EmitEvent,
    EnsureCandidate,
    EventType,
    Notify,
    PromoteStable,
    RemoveCandidate,
    RunVerification,
    ScaleDownCandidate,
    SetTraffic,
)
from rollout_operator.model import (
    TERMINAL_PHASES,
    AnalysisReport,
    ApprovalStep,
    Commands,
    Decision,
    JobState,
    Phase,
    RolloutSpec,
    ShadowStep,
    ShadowTest,
    VerifyJob,
    VerifyStep,
    WeightStep,
)
from rollout_operator.plan import (
    ANALYSED_PHASES,
    PROGRESS_DEADLINE_S,
    analysed_since,
    analysis_due,
    duration_of,
    next_check_in,
    phase_of,
    track_at,
)
from rollout_operator.routers.base import NOT_REPORTED, RouteAcceptance
from rollout_operator.status import (
    APPROVED,
    HEALTHY,
    HISTORY_LIMIT,
    PROGRESSING,
    ROLLED_BACK,
    ROUTE_ACCEPTED,
    VERIFIED,
    WARNING,
    HistoryEntry,
    RolloutStatus,
    SignOffRecord,
    Verification,
    set_condition,
    stamp,
)

if TYPE_CHECKING:  # spec.py checks queries with the analysis package, which talks to Prometheus
    from rollout_operator.spec import SpecError

RETRYABLE_PHASES = frozenset({Phase.ROLLED_BACK, Phase.FAILED, Phase.INVALID})
_ABORTABLE_PHASES = frozenset(Phase) - TERMINAL_PHASES - {Phase.PROMOTING}
_EFFECT_ORDER = (
    EnsureCandidate,
    PromoteStable,
    SetTraffic,
    RunVerification,
    ScaleDownCandidate,
    RemoveCandidate,
)
VERIFY_GRACE_S = 30.0  # past the Job's own deadline before the operator gives up on it


class _Turn:
    """One call of `advance`: the status being built and the actions collected on the way.

    Effects are kept one per kind (the last one asked for wins) and come out in a fixed order,
    so a transition that changes the traffic twice in one call still yields one SetTraffic.
    """

    def __init__(
        self,
        spec: RolloutSpec,
        status: RolloutStatus,
        now: float,
        *,
        commands: Commands,
        candidate_available: bool,
        stable_available: bool,
        router_sizes_candidate: bool,
        route: RouteAcceptance,
        deadline_s: float,
        verify_job: VerifyJob | None = None,
    ) -> None:
        self.spec, self.status, self.now = spec, status, now
        self.route = route
        self.verify_job = verify_job
        self.commands = commands
        self.candidate_available = candidate_available
        self.stable_available = stable_available
        self.router_sizes_candidate = router_sizes_candidate
        self.deadline_s = deadline_s
        self.effects: dict[type, Effect] = {}
        self.announcements: list[Announcement] = []

    def update(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.update(
            conditions=set_condition(
                self.status.conditions, type_, status, reason, message, now=self.now
            )
        )

    def effect(self, *effects: Effect) -> None:
        for effect in effects:
            self.effects[type(effect)] = effect

    def drop(self, *kinds: type) -> None:
        for kind in kinds:
            self.effects.pop(kind, None)

    def announce(self, type_: EventType, reason: str, message: str, notify: str = "") -> None:
        self.announcements.append(EmitEvent(type_, reason, message))
        if notify and self.spec.webhook_url:
            self.announcements.append(Notify(notify, message))

    def transition(
        self, phase: Phase, message: str, reason: str, *, fresh: bool = False, **changes: object
    ) -> None:
        """Enter ``phase`` (or a new step of it) now: status, Progressing, Event, notification.
        ``fresh``: a new rollout entering its first phase, which counts as a phase change."""
        changed = fresh or phase is not self.status.phase
        self.update(phase=phase, message=message, step_started_at=self.now, **changes)
        entry = HistoryEntry(phase, self.status.step, self.status.weight,
                             self.status.mirror_percent, self.now, reason, message)  # fmt: skip
        self.update(history=(*self.status.history, entry)[-HISTORY_LIMIT:])
        progressing = "False" if phase in TERMINAL_PHASES else "True"
        self.condition(PROGRESSING, progressing, reason, message)
        warning = phase in (Phase.ROLLED_BACK, Phase.FAILED)
        self.announce(
            "Warning" if warning else "Normal",
            phase.value,
            message,
            notify=("rollback" if phase is Phase.ROLLED_BACK else "phaseChanged")
            if changed
            else "",
        )

    def result(self) -> tuple[RolloutStatus, list[Action]]:
        effects = [self.effects[kind] for kind in _EFFECT_ORDER if kind in self.effects]
        return self.status, [*effects, *self.announcements]


# --- the public surface -------------------------------------------------------------------------


def advance(
    spec: RolloutSpec,
    status: RolloutStatus,
    now: float,
    report: AnalysisReport | None = None,
    commands: Commands = Commands(),  # noqa: B008 - frozen, so a shared default is safe
    *,
    candidate_available: bool,
    stable_available: bool = True,
    router_sizes_candidate: bool = False,
    route: RouteAcceptance = NOT_REPORTED,
    progress_deadline_s: float = PROGRESS_DEADLINE_S,
    verify_job: VerifyJob | None = None,
) -> tuple[RolloutStatus, list[Action]]:
    """The next status and the actions to get there (see the module docstring for the rules).
    ``verify_job``: the verification Job as the cluster shows it (Verifying only)."""
    turn = _Turn(
        spec,
        status,
        stamp(now),
        commands=commands,
        candidate_available=candidate_available,
        stable_available=stable_available,
        router_sizes_candidate=router_sizes_candidate,
        route=route,
        deadline_s=progress_deadline_s,
        verify_job=verify_job,
    )
    if status.phase in TERMINAL_PHASES:
        if not (commands.retry and status.phase in RETRYABLE_PHASES):
            return status, []
        _retry(turn)  # and on from Pending in the same call
    elif status.step_started_at is None:
        _start(turn)
    if commands.abort and status.phase in _ABORTABLE_PHASES:
        _roll_back(turn, "aborted by user", "Aborted")
    else:
        _run(turn, report)
    _refresh_health(turn)
    _refresh_gate(turn)
    return turn.result()


def invalid_status(
    status: RolloutStatus, error: SpecError, now: float
) -> tuple[RolloutStatus, list[Action]]:
    """Phase Invalid naming the field; traffic is left as it is. Idempotent for the same error."""
    message = str(error)
    if status.phase is Phase.INVALID and status.message == message:
        return status, []
    conditions = set_condition(
        status.conditions, PROGRESSING, "False", "InvalidSpec", message, now=now
    )
    new = replace(status, phase=Phase.INVALID, message=message, conditions=conditions)
    return new, [EmitEvent("Warning", Phase.INVALID.value, message)]


# --- the phases ---------------------------------------------------------------------------------


def _run(turn: _Turn, report: AnalysisReport | None) -> None:
    # A candidate that is not available gets no traffic, so its track has no data: a round
    # then says nothing about it and is not counted (the progress deadline still applies);
    # nor does one taken while the step's routing is not in force.
    if report is not None and turn.candidate_available and turn.route.in_force:
        _judge(turn, report)
        if turn.status.phase is Phase.ROLLED_BACK:
            return
    phase = turn.status.phase
    if _promote(turn):
        return
    if phase is Phase.PENDING:
        _pending(turn)
    elif phase is Phase.PROMOTING:
        _promoting(turn)
    elif turn.status.step >= len(turn.spec.steps):  # the plan was shortened under us
        _enter_promoting(turn, "all steps done")
    elif phase_of(turn.spec.steps[turn.status.step]) is not phase:  # the plan was edited
        _enter_step(turn, turn.status.step)
    elif phase is Phase.AWAITING_APPROVAL:
        _awaiting(turn)
    elif phase is Phase.VERIFYING:
        _verifying(turn)
    else:
        _stepping(turn)


def _promote(turn: _Turn) -> bool:
    """A ``promote`` command: skip the remaining steps, unless that skips sign-offs by role
    (which only their roles may give: refused with an Event). Whether it promoted."""
    if not turn.commands.promote or turn.status.phase is Phase.PROMOTING:
        return False
    unsigned = _unsigned_roles_ahead(turn)
    if unsigned:
        turn.announce("Warning", "PromoteRefused", f"promote would skip {unsigned}: sign off first")
        return False
    turn.condition(APPROVED, "True", "Promoted", "promoted by user: remaining steps skipped")
    _enter_promoting(turn, "promoted by user")
    return True


def _start(turn: _Turn) -> None:
    if turn.status.phase is not Phase.PENDING:
        turn.update(step_started_at=turn.now)  # a status without a start time: time from now
        return
    message = f"rollout of {_describe_candidate(turn.spec)} started"
    turn.transition(Phase.PENDING, message, "Started", fresh=True)


def _pending(turn: _Turn) -> None:
    turn.effect(EnsureCandidate(track_at(turn.spec.steps, 0)))
    if turn.candidate_available:
        turn.update(analysed_since=turn.now)
        _enter_step(turn, 0)
        return
    started = turn.status.step_started_at or turn.now
    if turn.now - started >= turn.deadline_s:
        _fail(turn, f"candidate not available {_dur(turn.now - started)} after the start")
    else:
        turn.update(message="waiting for the candidate Deployment to become available")


def _stepping(turn: _Turn) -> None:
    status = turn.status
    turn.effect(
        EnsureCandidate(track_at(turn.spec.steps, status.step)),
        _candidate_traffic(turn, status.weight, status.mirror_percent),
    )
    if not _candidate_ok(turn) or not _route_ok(turn):
        return
    status = turn.status  # _route_ok may have restarted the step's clock
    better = _significantly_better(turn)
    if better:
        turn.announce("Normal", "ShadowBetter", better)
        _enter_step(turn, status.step + 1)
        return
    duration = duration_of(turn.spec.steps[status.step])
    if turn.now - (status.step_started_at or turn.now) < duration:
        return
    hold = _hold_reason(turn)
    if hold:
        message = f"step {status.step + 1} has run its {_dur(duration)}; holding: {hold}"
        turn.update(message=message)
        turn.condition(PROGRESSING, "True", "Holding", message)
        return
    _enter_step(turn, status.step + 1)


def _awaiting(turn: _Turn) -> None:
    status = turn.status
    turn.effect(
        EnsureCandidate(track_at(turn.spec.steps, status.step)),
        _candidate_traffic(turn, status.weight, status.mirror_percent),
    )
    step = turn.spec.steps[status.step]
    roles = step.roles if isinstance(step, ApprovalStep) else ()
    if roles:
        _sign_offs(turn, roles)
    elif turn.commands.approve:
        turn.condition(APPROVED, "True", "Approved", f"step {status.step + 1} approved by user")
        _enter_step(turn, status.step + 1)
    else:
        _candidate_ok(turn)


def _promoting(turn: _Turn) -> None:
    status = turn.status
    turn.effect(PromoteStable(), SetTraffic(status.weight, status.mirror_percent))
    started = status.step_started_at or turn.now
    # Not in the instant the promotion began: the caller has not applied PromoteStable yet.
    if turn.stable_available and turn.now > started:
        turn.drop(EnsureCandidate)
        turn.effect(SetTraffic(0, 0), RemoveCandidate())
        message = f"{_describe_candidate(turn.spec)} promoted to stable"
        turn.transition(Phase.SUCCEEDED, message, "Succeeded", weight=0, mirror_percent=0)
        return
    if turn.now - started >= turn.deadline_s:
        _fail(turn, f"stable Deployment not available {_dur(turn.now - started)} after promotion")


def _enter_step(turn: _Turn, index: int) -> None:
    steps = turn.spec.steps
    if index >= len(steps):
        _enter_promoting(turn, "all steps done")
        return
    step, where = steps[index], f"step {index + 1}/{len(steps)}"
    # Pending ensured the candidate with the first step's track, so entering step 0 is no change.
    before = track_at(steps, turn.status.step if turn.status.phase != Phase.PENDING else 0)
    track_changes = track_at(steps, index) != before
    weight, mirror = turn.status.weight, turn.status.mirror_percent
    if isinstance(step, ShadowStep):  # a new shadow step counts its own pairs; the last one's
        turn.update(shadow_verdict=None)  # verdict stays for the record (the report) until then
        weight, mirror = 0, step.percent
        phase, text = Phase.SHADOW, f"shadow, {mirror}% mirrored, for {_dur(step.duration_s)}"
    elif isinstance(step, WeightStep):
        weight, mirror = step.weight, 0
        phase, text = Phase.CANARY, f"{weight}% of traffic for {_dur(step.duration_s)}"
    elif isinstance(step, VerifyStep):
        weight, mirror = 0, 0
        phase, text = (
            Phase.VERIFYING,
            f"verifying the candidate (Job, at most {_dur(step.timeout_s)})",
        )
        # <target>-verify-<step>-<ms in base 36>: unique per attempt, within a label's 63
        job = f"{turn.spec.target[:40].rstrip('-')}-verify-{index + 1}-{_token(turn.now)}"
        turn.update(verification=Verification(job=job, step=index, started_at=turn.now))
        turn.condition(VERIFIED, "Unknown", "Verifying", f"{where}: verification Job started")
    elif step.roles:
        phase = Phase.AWAITING_APPROVAL
        text = f"waiting for sign-offs by {', '.join(step.roles)}"
        text += " (kubectl schedrollout approve NAME --role ROLE)"
        baseline = {
            r: turn.commands.sign_offs[r][1] for r in step.roles if r in turn.commands.sign_offs
        }
        turn.update(approval_baseline=baseline)
        turn.condition(
            APPROVED,
            "False",
            "AwaitingSignOffs",
            f"{where} needs sign-offs by {', '.join(step.roles)}",
        )
    else:
        phase, text = Phase.AWAITING_APPROVAL, "waiting for approval (kubectl schedrollout approve)"
        turn.condition(APPROVED, "False", "AwaitingApproval", f"{where} needs an approval")
    turn.transition(
        phase, f"{where}: {text}", "StepStarted", step=index, weight=weight, mirror_percent=mirror
    )
    if isinstance(step, VerifyStep) and turn.status.verification is not None:
        turn.effect(RunVerification(turn.status.verification.job, index))
    # A new track rolls the candidate's pods: no traffic until the new ones are available.
    gate = track_changes and not turn.router_sizes_candidate
    traffic = SetTraffic(0, 0) if gate else _candidate_traffic(turn, weight, mirror)
    turn.effect(EnsureCandidate(track_at(steps, index)), traffic)
    # As the step itself records it, so that the next reconcile of the step changes nothing.
    if not turn.candidate_available and turn.status.candidate_unavailable_since is None:
        turn.update(candidate_unavailable_since=turn.now)
    elif turn.candidate_available and turn.status.candidate_unavailable_since is not None:
        turn.update(candidate_unavailable_since=None)


def _enter_promoting(turn: _Turn, why: str) -> None:
    message = f"promoting {_describe_candidate(turn.spec)} to stable ({why})"
    turn.transition(Phase.PROMOTING, message, "Promoting")
    turn.drop(EnsureCandidate)
    turn.effect(PromoteStable(), SetTraffic(turn.status.weight, turn.status.mirror_percent))


def _roll_back(turn: _Turn, reason: str, code: str) -> None:
    turn.condition(ROLLED_BACK, "True", code, reason)
    turn.transition(
        Phase.ROLLED_BACK, f"rolled back: {reason}", "RolledBack",
        weight=0, mirror_percent=0, rollback_reason=reason,
    )  # fmt: skip
    turn.drop(EnsureCandidate, PromoteStable, RunVerification)
    turn.effect(SetTraffic(0, 0), ScaleDownCandidate())


def _fail(turn: _Turn, reason: str) -> None:
    turn.transition(Phase.FAILED, reason, "Failed")
    turn.drop(*_EFFECT_ORDER)


def _retry(turn: _Turn) -> None:
    old = turn.status
    turn.status = RolloutStatus(
        conditions=old.conditions,
        stable_revision=old.stable_revision,
        candidate_revision=old.candidate_revision,
        observed_generation=old.observed_generation,
        last_command=old.last_command,
        history=old.history,
        sign_offs=old.sign_offs,
    )
    for type_ in (ROLLED_BACK, APPROVED, WARNING, VERIFIED):
        if old.condition(type_) is not None:
            turn.condition(type_, "False", "Retried", "cleared by retry")
    turn.condition(HEALTHY, "Unknown", "NotAnalysed", "no analysis round yet")
    turn.transition(Phase.PENDING, f"retrying {_describe_candidate(turn.spec)}", "Retried")
    turn.effect(EnsureCandidate(track_at(turn.spec.steps, 0)))


def _candidate_traffic(turn: _Turn, weight: int, mirror: int) -> SetTraffic:
    """The step's traffic while the candidate is available, none while it is not: a candidate
    whose pods are down or still rolling out (a new track) would fail its calls or answer them
    from pods of the old track, whose metrics carry the wrong label. A router that sizes the
    candidate is the exception: its traffic is the candidate's pods, so it must scale them
    regardless."""
    if turn.candidate_available or turn.router_sizes_candidate:
        return SetTraffic(weight, mirror)
    return SetTraffic(0, 0)


def _candidate_ok(turn: _Turn) -> bool:
    """Whether the candidate is available; unavailable past the deadline rolls back."""
    if turn.candidate_available:
        if turn.status.candidate_unavailable_since is not None:
            turn.update(candidate_unavailable_since=None)
        return True
    since = turn.status.candidate_unavailable_since
    if since is None:
        since = turn.now
        turn.update(candidate_unavailable_since=since)
    if turn.now - since >= turn.deadline_s:
        reason = f"candidate unavailable for {_dur(turn.now - since)}"
        _roll_back(turn, reason, "CandidateUnavailable")
    return False


def _route_ok(turn: _Turn) -> bool:
    """Whether the routing written for this step is in force. It comes into force: the step's
    clock starts now. Not in force past the deadline (rejected, or never taken): rolled back."""
    route, status = turn.route, turn.status
    if route.state != "NotReported" or status.condition(ROUTE_ACCEPTED) is not None:
        value = {"Accepted": "True", "Rejected": "False"}.get(route.state, "Unknown")
        turn.condition(ROUTE_ACCEPTED, value, route.state, route.message)
    if route.in_force:
        if status.route_pending_since is not None:
            turn.update(route_pending_since=None, step_started_at=turn.now)
        return True
    since = turn.now if status.route_pending_since is None else status.route_pending_since
    turn.update(route_pending_since=since, message=f"route not in force yet: {route.message}")
    if turn.now - since >= turn.deadline_s:
        reason = f"route not in force for {_dur(turn.now - since)}: {route.message}"
        _roll_back(turn, reason, "RouteNotAccepted")
    return False


# --- the gates ----------------------------------------------------------------------------------


def _verifying(turn: _Turn) -> None:
    """The verify step: the Job runs against the candidate before any traffic reaches it; its
    result ends the step (passed: next step; failed, deleted, never started, overdue: rolled
    back with the reason)."""
    status = turn.status
    step = turn.spec.steps[status.step]
    assert isinstance(step, VerifyStep)  # _run routes only a verify step here
    turn.effect(EnsureCandidate(track_at(turn.spec.steps, status.step)), SetTraffic(0, 0))
    found = status.verification
    if found is None or found.step != status.step:  # a status from before the plan's edit
        _enter_step(turn, status.step)
        return
    if not _candidate_ok(turn):
        return
    job, name = turn.verify_job, f"verify Job {found.job}"
    state = job.state if job is not None else JobState.ABSENT
    age = turn.now - found.started_at
    if state is JobState.ABSENT:
        if found.created:
            _verification_failed(turn, f"{name} was deleted before it finished", "JobDeleted")
        else:
            turn.effect(RunVerification(found.job, status.step))
        return
    if state is JobState.SUCCEEDED or state is JobState.FAILED:
        _verification_done(turn, step, job)
        return
    started = found.started or state is JobState.RUNNING
    reason = job.reason if job is not None and job.reason else found.reason
    turn.update(verification=replace(found, state=state.value, started=started, reason=reason))
    start_limit = min(turn.deadline_s, step.timeout_s)
    if not started and age >= start_limit:
        why = f" ({reason})" if reason else ""  # the last reason a pod gave, if any
        _verification_failed(
            turn, f"{name}: no container started within {_dur(start_limit)}{why}", "JobNotStarted"
        )
    elif age >= step.timeout_s + VERIFY_GRACE_S:
        overdue = f"{name} still running {_dur(age)} after it began"
        _verification_failed(turn, f"{overdue} (timeout {_dur(step.timeout_s)})", "JobTimedOut")


def _verification_done(turn: _Turn, step: VerifyStep, job: VerifyJob | None) -> None:
    found = turn.status.verification
    assert found is not None and job is not None  # the caller checked both
    result, name = job.result, f"verify Job {found.job}"
    if job.state is JobState.SUCCEEDED and result is not None and result.get("passed") is True:
        turn.update(verification=replace(found, state="Passed", started=True, result=result))
        message = f"verification passed: {verification_summary(result)}"
        turn.condition(VERIFIED, "True", "Passed", message)
        turn.announce("Normal", "VerificationPassed", message)
        _enter_step(turn, turn.status.step + 1)
        return
    if result is not None and result.get("reason"):
        reason = f"{name}: {result['reason']}"
    elif job.reason == "DeadlineExceeded" and not found.started:
        why = f" ({found.reason})" if found.reason else ""
        reason = f"{name}: no container started within its timeout of {_dur(step.timeout_s)}{why}"
    elif job.reason == "DeadlineExceeded":
        reason = f"{name} exceeded its timeout of {_dur(step.timeout_s)}"
    elif job.state is JobState.SUCCEEDED:
        reason = f"{name} finished without a result"
    else:
        reason = f"{name} failed ({job.reason or 'no reason given'}) without a result"
    turn.update(verification=replace(found, state="Failed", started=True, result=result,
                                     reason=job.reason))  # fmt: skip
    _verification_failed(turn, reason, "VerificationFailed")


def _verification_failed(turn: _Turn, reason: str, code: str) -> None:
    found = turn.status.verification
    if found is not None and found.state != "Failed":
        turn.update(verification=replace(found, state="Failed", reason=code))
    turn.condition(VERIFIED, "False", code, reason)
    _roll_back(turn, f"verification failed: {reason}", code)


def verification_summary(result: dict[str, object]) -> str:
    """The figures of a verification result in a line: replay and load test."""
    parts = []
    replay = result.get("replay")
    if isinstance(replay, dict):
        parts.append(
            f"replay {replay.get('requests')} requests, {replay.get('invalid')} invalid, "
            f"mean makespan ratio {_num(replay.get('meanRatio'))}"
        )
    load = result.get("load")
    if isinstance(load, dict):
        parts.append(
            f"load {load.get('requests')} calls at {load.get('concurrency')} in flight, "
            f"p99 {_num(load.get('p99Seconds'))} s (limit {_num(load.get('limitSeconds'))} s)"
        )
    return "; ".join(parts) or "no figures"


def _num(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "-"


def _sign_offs(turn: _Turn, roles: tuple[str, ...]) -> None:
    """Count the sign-offs new since the step began, one person per role (four eyes: a user who
    signed as one role does not count for another); all roles signed: the next step."""
    status = turn.status
    where = f"step {status.step + 1}"
    if turn.commands.approve:
        turn.announce(
            "Warning", "SignOffsRequired",
            f"{where} needs sign-offs by {', '.join(roles)}: a plain approve does not count "
            "(kubectl schedrollout approve NAME --role ROLE)",
        )  # fmt: skip
    signed = {r.role: r for r in _current_sign_offs(status)}
    for role in roles:
        found = turn.commands.sign_offs.get(role)
        if role in signed or found is None or found[1] == status.approval_baseline.get(role):
            continue
        user = found[0]
        other = next((r.role for r in signed.values() if r.user == user), None)
        if other is not None:
            turn.announce(
                "Warning", "SignOffNotCounted",
                f"{user} signed off as {other} already; {role} needs another person",
            )  # fmt: skip
            continue
        record = SignOffRecord(status.step, role, user, turn.now)
        signed[role] = record
        turn.update(sign_offs=(*turn.status.sign_offs, record))
        turn.announce("Normal", "SignedOff", f"{where}: {role} signed off by {user}")
    done = [f"{r} {signed[r].user}" for r in roles if r in signed]
    if len(done) == len(roles):
        turn.condition(APPROVED, "True", "SignedOff", f"{where} signed off by {', '.join(done)}")
        _enter_step(turn, status.step + 1)
        return
    waiting = [r for r in roles if r not in signed]
    message = f"{where}: waiting for sign-offs by {', '.join(waiting)}"
    if done:
        message += f" (signed: {', '.join(done)})"
    turn.update(message=message)
    _candidate_ok(turn)


def _current_sign_offs(status: RolloutStatus) -> list[SignOffRecord]:
    """The sign-offs counted for the current step (earlier attempts' stay in the record)."""
    started = status.step_started_at if status.step_started_at is not None else 0.0
    return [r for r in status.sign_offs if r.step == status.step and r.at >= started]


def _unsigned_roles_ahead(turn: _Turn) -> str:
    """The sign-offs a promote would skip, in words ("" when none)."""
    status = turn.status
    if status.phase in TERMINAL_PHASES or status.phase is Phase.PROMOTING:
        return ""
    signed = {r.role for r in _current_sign_offs(status)}
    missing = []
    for index in range(status.step, len(turn.spec.steps)):
        step = turn.spec.steps[index]
        if isinstance(step, ApprovalStep) and step.roles:
            roles = [r for r in step.roles if index != status.step or r not in signed]
            if roles:
                missing.append(f"step {index + 1}'s sign-offs by {', '.join(roles)}")
    return "; ".join(missing)


def _significantly_better(turn: _Turn) -> str:
    """Why the shadow step may end early ("" when it may not): asked for, and the sequential
    test decided ``better`` on a round taken in this step."""
    compare, verdict = turn.spec.analysis.shadow_compare, turn.status.shadow_verdict
    if (
        turn.status.phase is not Phase.SHADOW
        or compare is None
        or compare.test is not ShadowTest.SEQUENTIAL
        or not compare.promote_early
        or verdict is None
        or verdict.decision is not Decision.BETTER
    ):
        return ""
    return f"candidate significantly better in shadow after {verdict.pairs} pairs: leaving early"


def _refresh_gate(turn: _Turn) -> None:
    """``status.gate``: what the current step waits for, in a few words."""
    status = turn.status
    gate = ""
    if status.phase is Phase.VERIFYING and status.verification is not None:
        gate = f"verify {status.verification.state}"
    elif status.phase is Phase.AWAITING_APPROVAL and status.step < len(turn.spec.steps):
        step = turn.spec.steps[status.step]
        if isinstance(step, ApprovalStep) and step.roles:
            gate = f"sign-offs {len(_current_sign_offs(status))}/{len(step.roles)}"
        else:
            gate = "approval"
    elif status.phase is Phase.SHADOW and status.shadow_verdict is not None:
        verdict = status.shadow_verdict
        gate = f"pairs {verdict.pairs} {verdict.decision.value}"
    turn.update(gate=gate)


def _token(now: float) -> str:
    """A short name part unique per step entry: the milliseconds, in base 36."""
    digits, value = "0123456789abcdefghijklmnopqrstuvwxyz", int(now * 1000)
    out = ""
    while value:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
    return out[-8:] or "0"


# --- analysis -----------------------------------------------------------------------------------


def _judge(turn: _Turn, report: AnalysisReport) -> None:
    report = replace(report, time=stamp(report.time))
    last = turn.status.last_analysis
    if last is not None and report.time <= last.time:
        return  # already counted
    turn.update(last_analysis=report)
    status = turn.status
    if status.phase not in ANALYSED_PHASES:
        return
    verdict = judgement.judge(
        turn.spec, status.counters, status.active_warnings, report, status.phase
    )
    turn.update(counters=verdict.counters, active_warnings=verdict.active_warnings)
    if report.sequential is not None and status.phase is Phase.SHADOW:
        turn.update(shadow_verdict=report.sequential)
    for text in verdict.started:
        turn.announce("Warning", "AnalysisWarning", text)
    for text in verdict.cleared:
        turn.announce("Normal", "AnalysisWarningCleared", text)
    if verdict.active_warnings:
        turn.condition(WARNING, "True", "ThresholdCrossed", verdict.warning_message)
    else:
        turn.condition(WARNING, "False", "NoWarnings", "no warning threshold crossed")
    if verdict.rollback is not None:
        _roll_back(turn, *verdict.rollback)


def _hold_reason(turn: _Turn) -> str:
    status = turn.status
    started = turn.now if status.step_started_at is None else status.step_started_at
    return judgement.hold_reason(turn.spec, status.last_analysis, started, status.phase)


def _refresh_health(turn: _Turn) -> None:
    """Healthy: the candidate's availability, then the last round's rollback checks."""
    status = turn.status
    if status.phase in ANALYSED_PHASES and not turn.candidate_available:
        health = ("False", "CandidateUnavailable", "the candidate Deployment is not available")
    else:
        health = judgement.health(turn.spec, status.last_analysis, status.counters, status.phase)
    turn.condition(HEALTHY, *health)


# --- wording ------------------------------------------------------------------------------------


def _describe_candidate(spec: RolloutSpec) -> str:
    candidate = spec.candidate
    parts = [candidate.image, f"model {candidate.model_version}" if candidate.model_version else ""]
    return ", ".join(p for p in parts if p) or f"env of {spec.target}"


def _dur(seconds: float) -> str:
    return durations.format_seconds(seconds)


__all__ = [  # with the helpers the handlers need next to advance()
    "ANALYSED_PHASES",
    "PROGRESS_DEADLINE_S",
    "RETRYABLE_PHASES",
    "RolloutStatus",
    "advance",
    "analysed_since",
    "analysis_due",
    "invalid_status",
    "next_check_in",
    "track_at",
]
