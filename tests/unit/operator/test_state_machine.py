"""advance(): every transition, timers across a restart, analysis counting, commands."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from rollout_operator.actions import (
    EmitEvent,
    EnsureCandidate,
    Notify,
    PromoteStable,
    RemoveCandidate,
    ScaleDownCandidate,
    SetTraffic,
)
from rollout_operator.model import Commands, Phase
from rollout_operator.spec import SpecError, parse_spec
from rollout_operator.state_machine import (
    advance,
    analysed_since,
    analysis_due,
    invalid_status,
    next_check_in,
    track_at,
)
from rollout_operator.status import RolloutStatus
from tests.unit.operator.rollout_cases import (
    CANARY_S,
    FULL_S,
    INTERVAL_S,
    SHADOW_NAME,
    SHADOW_S,
    SPEC,
    T0,
    Driver,
    effects,
    events,
    make_spec,
    no_data,
    notifications,
    report,
)

pytestmark = pytest.mark.unit


def condition(status: RolloutStatus, type_: str) -> tuple[str, str]:
    found = status.condition(type_)
    assert found is not None, f"no {type_} condition in {status.conditions}"
    return found.status, found.reason


def phase(driver: Driver) -> Phase:
    """The driver's phase (a call, so mypy does not carry a narrowed type across ticks)."""
    return driver.status.phase


def restart(status: RolloutStatus) -> RolloutStatus:
    """What a restarted operator reads back: the status through JSON."""
    return RolloutStatus.from_dict(json.loads(json.dumps(status.to_dict())))


def in_shadow() -> Driver:
    driver = Driver()
    driver.tick()
    assert phase(driver) is Phase.SHADOW
    return driver


def in_canary(step: int = 1) -> Driver:
    driver = in_shadow()
    driver.finish_step(SHADOW_S)
    while driver.status.step < step:
        driver.finish_step(CANARY_S)
    assert (driver.status.phase, driver.status.step) == (Phase.CANARY, step)
    return driver


def awaiting() -> Driver:
    driver = in_canary(2)
    driver.finish_step(CANARY_S)
    assert phase(driver) is Phase.AWAITING_APPROVAL
    return driver


def promoting() -> Driver:
    driver = awaiting()
    driver.tick(1, commands=Commands(approve=True))
    driver.finish_step(FULL_S)
    assert phase(driver) is Phase.PROMOTING
    return driver


# --- Pending ----------------------------------------------------------------------------------


def test_a_new_rollout_waits_for_its_candidate() -> None:
    driver = Driver()
    actions = driver.tick(available=False)
    assert phase(driver) is Phase.PENDING
    assert driver.status.step_started_at == T0
    assert effects(actions) == [EnsureCandidate("shadow")]
    assert events(actions) == [("Normal", "Pending")]
    assert notifications(actions) == ["phaseChanged"]
    assert condition(driver.status, "Progressing") == ("True", "Started")
    assert condition(driver.status, "Healthy") == ("Unknown", "NotAnalysed")
    again = driver.tick(30, available=False)
    assert effects(again) == [EnsureCandidate("shadow")]
    assert events(again) == []
    assert "waiting for the candidate" in driver.status.message


def test_the_analysis_reads_back_to_the_first_step_of_the_attempt_not_before() -> None:
    driver = Driver()
    assert driver.status.analysed_since is None
    driver.tick(available=False)
    assert driver.status.analysed_since is None  # Pending: no step yet
    driver.tick(5)
    first = driver.status.analysed_since
    assert first == driver.status.step_started_at
    driver.finish_step(SHADOW_S)
    driver.finish_step(CANARY_S)
    assert (driver.status.step, driver.status.analysed_since) == (2, first)  # later steps keep it
    assert restart(driver.status).analysed_since == first


def test_a_candidate_whose_template_changes_mid_attempt_is_analysed_from_then_on() -> None:
    running = RolloutStatus(analysed_since=T0, candidate_revision="aaaa")
    assert analysed_since(running, "aaaa", T0 + 50) == T0  # the same pods' template
    assert analysed_since(running, "bbbb", T0 + 50) == T0 + 50  # a spec edit, a track change
    assert analysed_since(replace(running, analysed_since=None), "bbbb", T0 + 50) is None
    assert analysed_since(replace(running, candidate_revision=""), "bbbb", T0 + 50) == T0


def test_a_candidate_that_goes_down_mid_step_gets_no_traffic_until_it_is_back() -> None:
    driver = in_canary(2)
    assert effects(driver.tick(1, available=False))[1] == SetTraffic(0, 0)
    assert driver.status.weight == 50  # the step's weight, restored once the pods are back
    assert effects(driver.tick(1))[1] == SetTraffic(50, 0)


def test_pending_to_shadow_when_the_candidate_is_available() -> None:
    driver = Driver()
    driver.tick(available=False)
    actions = driver.tick(5)
    status = driver.status
    assert (status.phase, status.step, status.weight, status.mirror_percent) == (
        Phase.SHADOW,
        0,
        0,
        50,
    )
    assert status.step_started_at == T0 + 5
    assert status.analysed_since == T0 + 5  # no sample from before this attempt is analysed
    assert effects(actions) == [EnsureCandidate("shadow"), SetTraffic(0, 50)]
    assert events(actions) == [("Normal", "Shadow")]
    assert "step 1/5: shadow, 50% mirrored, for 1m40s" in status.message


def test_pending_fails_after_the_progress_deadline() -> None:
    driver = Driver()
    driver.tick(available=False)
    driver.tick(599, available=False)
    assert phase(driver) is Phase.PENDING
    actions = driver.tick(1, available=False)
    assert phase(driver) is Phase.FAILED
    assert effects(actions) == []
    assert events(actions) == [("Warning", "Failed")]
    assert condition(driver.status, "Progressing") == ("False", "Failed")
    assert "candidate not available 10m" in driver.status.message


def test_a_plan_starting_with_a_weight_step_starts_a_canary() -> None:
    spec = replace(SPEC, steps=SPEC.steps[1:])
    driver = Driver(spec=spec)
    actions = driver.tick()
    assert phase(driver) is Phase.CANARY
    assert effects(actions) == [EnsureCandidate("canary"), SetTraffic(10, 0)]


# --- steps and timers ---------------------------------------------------------------------------


def test_a_step_holds_its_traffic_until_its_time_is_up() -> None:
    driver = in_shadow()
    for _ in range(9):
        actions = driver.analysed()
        assert effects(actions) == [EnsureCandidate("shadow"), SetTraffic(0, 50)]
        assert events(actions) == []
    assert phase(driver) is Phase.SHADOW
    assert condition(driver.status, "Healthy") == ("True", "ChecksPass")


def test_the_whole_plan_to_succeeded() -> None:
    driver = in_shadow()
    actions = driver.finish_step(SHADOW_S)
    assert (driver.status.phase, driver.status.step, driver.status.weight) == (Phase.CANARY, 1, 10)
    # the candidate's pods roll to the canary track: no traffic until they are available
    assert effects(actions) == [EnsureCandidate("canary"), SetTraffic(0, 0)]
    assert notifications(actions) == ["phaseChanged"]
    assert effects(driver.tick(1, available=False)) == [EnsureCandidate("canary"), SetTraffic(0, 0)]
    assert effects(driver.tick(1)) == [EnsureCandidate("canary"), SetTraffic(10, 0)]

    actions = driver.finish_step(CANARY_S)
    assert (driver.status.phase, driver.status.weight) == (Phase.CANARY, 50)
    assert effects(actions) == [EnsureCandidate("canary"), SetTraffic(50, 0)]
    assert events(actions) == [("Normal", "Canary")]
    assert notifications(actions) == []  # a step, not a phase change

    actions = driver.finish_step(CANARY_S)
    assert (driver.status.phase, driver.status.step, driver.status.weight) == (
        Phase.AWAITING_APPROVAL,
        3,
        50,
    )
    assert effects(actions) == [EnsureCandidate("canary"), SetTraffic(50, 0)]
    assert condition(driver.status, "Approved") == ("False", "AwaitingApproval")

    for _ in range(100):  # no timer on an approval: it waits, analysis goes on
        driver.analysed()
    assert phase(driver) is Phase.AWAITING_APPROVAL

    actions = driver.tick(1, commands=Commands(approve=True))
    assert (driver.status.phase, driver.status.weight) == (Phase.CANARY, 100)
    assert condition(driver.status, "Approved") == ("True", "Approved")
    assert effects(actions) == [EnsureCandidate("canary"), SetTraffic(100, 0)]

    actions = driver.finish_step(FULL_S)
    assert phase(driver) is Phase.PROMOTING
    assert driver.status.step == 4  # the last step: promotion does not move the step on
    assert effects(actions) == [PromoteStable(), SetTraffic(100, 0)]

    actions = driver.tick(5, stable=False)
    assert phase(driver) is Phase.PROMOTING
    assert effects(actions) == [PromoteStable(), SetTraffic(100, 0)]
    assert events(actions) == []

    actions = driver.tick(5, stable=True)
    assert phase(driver) is Phase.SUCCEEDED
    assert driver.status.weight == 0
    assert effects(actions) == [PromoteStable(), SetTraffic(0, 0), RemoveCandidate()]
    assert events(actions) == [("Normal", "Succeeded")]
    assert condition(driver.status, "Progressing") == ("False", "Succeeded")

    weights = [a.weight for acts in driver.history for a in acts if isinstance(a, SetTraffic)]
    assert sorted(set(weights)) == [0, 10, 50, 100]


def test_promotion_is_not_done_in_the_instant_it_begins() -> None:
    driver = promoting()
    status = driver.status
    again, actions = advance(SPEC, status, driver.now, candidate_available=True)
    assert again == status
    assert events(actions) == []


def test_promotion_fails_when_stable_never_becomes_available() -> None:
    driver = promoting()
    driver.tick(300, stable=False)
    actions = driver.tick(300, stable=False)
    assert phase(driver) is Phase.FAILED
    assert effects(actions) == []  # traffic left as it is, for a human
    assert "stable Deployment not available" in driver.status.message


def test_a_restart_resumes_the_step_with_the_remaining_time() -> None:
    driver = in_canary(1)
    started = driver.status.step_started_at
    assert started is not None
    driver.analysed(after=60)
    driver.status = restart(driver.status)  # the operator is killed and starts again
    assert driver.status.step_started_at == started
    driver.analysed(after=30)
    assert (driver.status.step, driver.status.step_started_at) == (1, started)
    actions = driver.analysed(after=10)  # 100 s after the step began
    assert (driver.status.step, driver.status.weight) == (2, 50)
    assert events(actions) == [("Normal", "Canary")]


def test_a_long_outage_moves_exactly_one_step() -> None:
    driver = in_canary(1)
    driver.status = restart(driver.status)
    driver.analysed(after=10 * CANARY_S)  # down for many step durations
    assert (driver.status.step, driver.status.weight) == (2, 50)
    assert driver.status.step_started_at == driver.now  # the next step gets its full time
    driver.analysed(after=CANARY_S - 1)
    assert driver.status.step == 2


def test_a_step_needs_a_round_taken_after_it_began() -> None:
    driver = in_canary(1)
    actions = driver.tick(CANARY_S)  # time is up, but no analysis round ran in this step
    assert driver.status.step == 1
    assert "no analysis round since the step began" in driver.status.message
    assert condition(driver.status, "Progressing") == ("True", "Holding")
    assert events(actions) == []
    driver.analysed(after=1)
    assert driver.status.step == 2


def test_a_restart_keeps_counters_warnings_and_the_last_round() -> None:
    driver = in_canary(1)
    driver.analysed(completion_rate=0.5, latency_p95_seconds=6.0)
    status = driver.status
    assert restart(status) == status
    driver.status = restart(status)
    actions = driver.analysed(completion_rate=0.5, latency_p95_seconds=6.0)
    assert phase(driver) is Phase.ROLLED_BACK  # the count went on from 1 to 2
    assert ("Warning", "AnalysisWarning") not in events(actions)  # the warning was not new


# --- analysis -----------------------------------------------------------------------------------


def test_consecutive_breaches_roll_back_with_a_reason() -> None:
    driver = in_canary(2)
    driver.analysed(completion_rate=0.84)
    assert driver.status.counters.breaches["completion-rate"] == 1
    assert phase(driver) is Phase.CANARY
    assert condition(driver.status, "Healthy") == ("False", "ThresholdBreached")
    actions = driver.analysed(completion_rate=0.84)
    status = driver.status
    assert status.phase is Phase.ROLLED_BACK
    assert status.rollback_reason == "completion-rate 0.84 < 0.90 for 2 intervals"
    assert (status.weight, status.mirror_percent, status.step) == (0, 0, 2)
    assert effects(actions) == [SetTraffic(0, 0), ScaleDownCandidate()]
    assert events(actions) == [("Warning", "RolledBack")]
    assert Notify("rollback", "rolled back: " + status.rollback_reason) in actions
    assert condition(status, "RolledBack") == ("True", "ThresholdBreached")
    assert condition(status, "Progressing") == ("False", "RolledBack")


def test_a_pass_resets_the_breach_count() -> None:
    driver = in_canary(1)
    for value in (0.84, 0.99, 0.84, 0.99, 0.84):
        driver.analysed(completion_rate=value)
    assert phase(driver) is Phase.CANARY
    assert driver.status.counters.breaches["completion-rate"] == 1


def test_no_data_neither_counts_nor_resets_a_breach() -> None:
    driver = in_canary(1)
    driver.analysed(completion_rate=0.8)
    driver.analysed(completion_rate=None)
    assert driver.status.counters.breaches["completion-rate"] == 1
    assert driver.status.counters.no_data == 1
    driver.analysed(completion_rate=0.8)
    assert driver.status.counters.no_data == 0
    assert phase(driver) is Phase.ROLLED_BACK


def test_each_rule_has_its_own_for() -> None:
    driver = in_canary(1)
    driver.analysed(latency_p95_seconds=12.5)
    driver.analysed(latency_p95_seconds=12.5)
    assert phase(driver) is Phase.CANARY
    driver.analysed(latency_p95_seconds=12.5)
    assert driver.status.rollback_reason == "latency-p95-seconds 12.50 > 10 for 3 intervals"


def test_a_rollback_in_the_approval_wait() -> None:
    driver = awaiting()
    driver.analysed(completion_rate=0.5)
    driver.analysed(completion_rate=0.5)
    assert phase(driver) is Phase.ROLLED_BACK
    assert driver.status.condition("Approved") is not None


def test_shadow_comparison_breach_rolls_back_in_shadow() -> None:
    driver = in_shadow()
    actions = driver.tick(INTERVAL_S, report(driver.now + INTERVAL_S, shadow=0.07))
    assert phase(driver) is Phase.ROLLED_BACK
    assert driver.status.rollback_reason == f"{SHADOW_NAME} 0.07 > 0 for 1 interval"
    assert effects(actions) == [SetTraffic(0, 0), ScaleDownCandidate()]


def test_the_shadow_comparison_only_counts_in_shadow() -> None:
    driver = in_canary(1)
    driver.tick(INTERVAL_S, report(driver.now + INTERVAL_S, shadow=0.5))
    driver.tick(INTERVAL_S, report(driver.now + INTERVAL_S, shadow=None))
    assert phase(driver) is Phase.CANARY
    assert driver.status.counters.no_data == 0


def test_shadow_comparison_without_data_holds_the_shadow_step() -> None:
    driver = in_shadow()
    for _ in range(12):
        driver.tick(INTERVAL_S, report(driver.now + INTERVAL_S, shadow=None))
    assert phase(driver) is Phase.SHADOW
    assert f"no data for {SHADOW_NAME}" in driver.status.message


def test_hold_never_promotes_or_rolls_back_without_data() -> None:
    driver = in_canary(1)
    for _ in range(50):  # 500 s, five times the step, twenty times the no-data limit
        actions = driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S))
        assert events(actions) == []
    status = driver.status
    assert (status.phase, status.step, status.weight) == (Phase.CANARY, 1, 10)
    assert status.counters.no_data == 50
    assert condition(status, "Healthy") == ("Unknown", "NoData")
    assert condition(status, "Progressing") == ("True", "Holding")
    assert "prometheus unreachable" in status.message
    driver.analysed()  # data again: the step, long over, ends at once
    assert (driver.status.step, driver.status.counters.no_data) == (2, 0)


def test_hold_also_holds_on_partial_data() -> None:
    driver = in_canary(1)
    for _ in range(11):
        driver.analysed(latency_p95_seconds=None)
    assert driver.status.step == 1
    assert "no data for latency-p95-seconds" in driver.status.message


def test_rollback_policy_rolls_back_at_the_no_data_limit() -> None:
    spec = make_spec(noData="rollback", noDataLimit=3)
    driver = Driver(spec=spec)
    driver.tick()
    driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S, spec))
    driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S, spec))
    assert phase(driver) is Phase.SHADOW
    actions = driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S, spec))
    assert phase(driver) is Phase.ROLLED_BACK
    assert driver.status.rollback_reason.startswith("no data for 3 analysis rounds")
    assert condition(driver.status, "RolledBack") == ("True", "NoData")
    assert effects(actions) == [SetTraffic(0, 0), ScaleDownCandidate()]


def test_rounds_while_the_candidate_rolls_out_are_not_counted() -> None:
    """Its pods restarting with the canary track get no traffic, so their track has no data."""
    spec = make_spec(noData="rollback", noDataLimit=2)
    driver = Driver(spec=spec)
    driver.tick()
    for _ in range(5):
        driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S, spec), available=False)
    assert phase(driver) is Phase.SHADOW
    assert driver.status.counters.no_data == 0
    driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S, spec))
    assert driver.status.counters.no_data == 1


def test_rollback_policy_counts_consecutive_rounds_only() -> None:
    spec = make_spec(noData="rollback", noDataLimit=2)
    driver = Driver(spec=spec)
    driver.tick()
    for _ in range(5):
        driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S, spec))
        driver.tick(INTERVAL_S, report(driver.now + INTERVAL_S, spec))
    assert phase(driver) is not Phase.ROLLED_BACK
    assert driver.status.counters.no_data == 0


def test_warnings_are_edge_triggered() -> None:
    driver = in_canary(1)
    actions = driver.analysed(latency_p95_seconds=6.2)
    assert events(actions) == [("Warning", "AnalysisWarning")]
    assert EmitEvent("Warning", "AnalysisWarning", "latency-p95-seconds 6.20 > 5") in actions
    assert condition(driver.status, "Warning") == ("True", "ThresholdCrossed")
    assert driver.status.active_warnings == ("latency-p95-seconds",)
    assert events(driver.analysed(latency_p95_seconds=7.0)) == []
    assert events(driver.analysed(latency_p95_seconds=None)) == []  # no data: still warned
    assert driver.status.active_warnings == ("latency-p95-seconds",)
    actions = driver.analysed(memory_utilisation=0.95, latency_p95_seconds=8.0)
    assert events(actions) == [("Warning", "AnalysisWarning")]
    warning = driver.status.condition("Warning")
    assert warning is not None
    assert warning.message == "latency-p95-seconds 8 > 5; memory-utilisation 0.95 > 0.90"
    actions = driver.analysed()
    assert events(actions) == [("Normal", "AnalysisWarningCleared")] * 2
    assert condition(driver.status, "Warning") == ("False", "NoWarnings")
    assert phase(driver) is Phase.CANARY  # warnings never roll back


def test_a_report_is_counted_once() -> None:
    driver = in_canary(1)
    breach = report(driver.now + 1, completion_rate=0.5)
    driver.tick(1, breach)
    driver.tick(1, breach)  # the same round handed in again (a retried reconcile)
    driver.tick(1, replace(breach, time=breach.time - 5))  # an older one
    assert driver.status.counters.breaches["completion-rate"] == 1
    assert phase(driver) is Phase.CANARY


def test_an_unavailable_candidate_holds_then_rolls_back() -> None:
    driver = in_canary(1)
    driver.tick(CANARY_S, report(driver.now + CANARY_S), available=False)
    assert driver.status.step == 1
    assert driver.status.candidate_unavailable_since == driver.now
    assert condition(driver.status, "Healthy") == ("False", "CandidateUnavailable")
    driver.tick(60, available=True)
    assert driver.status.candidate_unavailable_since is None
    driver.analysed()
    assert driver.status.step == 2
    driver.tick(1, available=False)
    driver.tick(599, available=False)
    assert phase(driver) is Phase.CANARY
    driver.tick(1, available=False)
    assert phase(driver) is Phase.ROLLED_BACK
    assert driver.status.rollback_reason == "candidate unavailable for 10m"


# --- commands -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [Driver, in_shadow, in_canary, awaiting])
def test_abort_rolls_back(make: object) -> None:
    driver = make()  # type: ignore[operator]
    actions = driver.tick(1, commands=Commands(abort=True))
    assert phase(driver) is Phase.ROLLED_BACK
    assert driver.status.rollback_reason == "aborted by user"
    assert effects(actions) == [SetTraffic(0, 0), ScaleDownCandidate()]
    assert condition(driver.status, "RolledBack") == ("True", "Aborted")


def test_abort_is_ignored_while_promoting() -> None:
    driver = promoting()
    driver.tick(1, commands=Commands(abort=True), stable=False)
    assert phase(driver) is Phase.PROMOTING


def test_retry_starts_over_with_cleared_counters() -> None:
    driver = in_canary(2)
    driver.analysed(completion_rate=0.5, memory_utilisation=0.99)
    driver.analysed(completion_rate=0.5)
    assert phase(driver) is Phase.ROLLED_BACK
    actions = driver.tick(30, commands=Commands(retry=True), available=False)
    status = driver.status
    assert (status.phase, status.step, status.weight) == (Phase.PENDING, 0, 0)
    assert status.counters.breaches == {}
    assert status.counters.no_data == 0
    assert (status.rollback_reason, status.active_warnings, status.last_analysis) == ("", (), None)
    assert effects(actions) == [EnsureCandidate("shadow")]
    assert events(actions) == [("Normal", "Pending")]
    assert condition(status, "RolledBack") == ("False", "Retried")
    assert condition(status, "Warning") == ("False", "Retried")
    assert status.analysed_since is None  # the failed attempt's samples are not this one's
    driver.tick(5)
    assert driver.status.analysed_since == driver.now
    assert phase(driver) is Phase.SHADOW


def test_retry_from_failed() -> None:
    driver = Driver()
    driver.tick(available=False)
    driver.tick(700, available=False)
    assert phase(driver) is Phase.FAILED
    driver.tick(1, commands=Commands(retry=True), available=False)
    assert phase(driver) is Phase.PENDING
    driver.tick(1, commands=Commands(retry=True))  # handled already: only the candidate counts
    assert phase(driver) is Phase.SHADOW


@pytest.mark.parametrize("make", [in_shadow, in_canary, awaiting])
def test_promote_skips_the_remaining_steps(make: object) -> None:
    driver = make()  # type: ignore[operator]
    weight, step = driver.status.weight, driver.status.step
    actions = driver.tick(1, commands=Commands(promote=True))
    assert phase(driver) is Phase.PROMOTING
    assert (driver.status.weight, driver.status.step) == (weight, step)
    assert PromoteStable() in effects(actions)
    assert condition(driver.status, "Approved") == ("True", "Promoted")
    driver.tick(5)
    assert phase(driver) is Phase.SUCCEEDED


@pytest.mark.parametrize(
    "commands",
    [Commands(approve=True), Commands(retry=True), Commands(promote=True)],
)
def test_commands_that_do_not_apply_are_no_ops(commands: Commands) -> None:
    driver = in_canary(1) if not commands.promote else promoting()
    before = driver.status
    actions = driver.tick(0, commands=commands, stable=False)
    assert driver.status == before
    assert events(actions) == []


# --- terminal phases, invalid specs, idempotence -------------------------------------------------


def rolled_back() -> Driver:
    driver = in_canary(1)
    driver.tick(1, commands=Commands(abort=True))
    return driver


def succeeded() -> Driver:
    driver = promoting()
    driver.tick(5)
    return driver


@pytest.mark.parametrize("make", [rolled_back, succeeded])
def test_terminal_phases_do_nothing(make: object) -> None:
    driver = make()  # type: ignore[operator]
    before = driver.status
    for commands in (
        Commands(),
        Commands(abort=True),
        Commands(approve=True),
        Commands(promote=True),
    ):
        actions = driver.tick(1000, report(driver.now + 1000, completion_rate=0.1), commands)
        assert (driver.status, actions) == (before, [])
    driver.tick(1, commands=Commands(retry=True), available=False)
    expected = Phase.SUCCEEDED if before.phase is Phase.SUCCEEDED else Phase.PENDING
    assert phase(driver) is expected


def test_invalid_spec_and_retry() -> None:
    driver = in_canary(1)
    error = SpecError("spec.steps[2].duration", "'2 days' is not a duration")
    status, actions = invalid_status(driver.status, error, driver.now)
    assert status.phase is Phase.INVALID
    assert status.message == "spec.steps[2].duration: '2 days' is not a duration"
    assert condition(status, "Progressing") == ("False", "InvalidSpec")
    assert actions == [EmitEvent("Warning", "Invalid", status.message)]
    assert invalid_status(status, error, driver.now + 5) == (status, [])
    assert advance(SPEC, status, driver.now, candidate_available=True) == (status, [])
    again, _ = advance(
        SPEC, status, driver.now, commands=Commands(retry=True), candidate_available=False
    )
    assert again.phase is Phase.PENDING


@pytest.mark.parametrize(
    "make", [Driver, in_shadow, in_canary, awaiting, promoting, rolled_back, succeeded]
)
@pytest.mark.parametrize("with_report", [False, True])
def test_advancing_twice_with_the_same_inputs_changes_nothing(
    make: object, with_report: bool
) -> None:
    driver = make()  # type: ignore[operator]
    now = driver.now + 1
    round_ = report(now, completion_rate=0.5) if with_report else None
    first, _ = advance(SPEC, driver.status, now, round_, candidate_available=True)
    second, actions = advance(SPEC, first, now, round_, candidate_available=True)
    assert second == first
    assert events(actions) == []
    assert notifications(actions) == []


def test_a_rollback_is_announced_once() -> None:
    driver = in_canary(1)
    driver.analysed(completion_rate=0.5)
    breach = report(driver.now + INTERVAL_S, completion_rate=0.5)
    first, actions = advance(
        SPEC, driver.status, driver.now + INTERVAL_S, breach, candidate_available=True
    )
    assert events(actions) == [("Warning", "RolledBack")]
    for later in (0, 5, 500):
        status, again = advance(
            SPEC, first, driver.now + INTERVAL_S + later, breach, candidate_available=True
        )
        assert (status, again) == (first, [])


# --- helpers for the handlers ---------------------------------------------------------------------


def test_track_at() -> None:
    assert [track_at(SPEC.steps, i) for i in range(5)] == [
        "shadow",
        "canary",
        "canary",
        "canary",
        "canary",
    ]
    steps = [{"approval": {}}, {"shadow": {"duration": "1h"}}, {"approval": {}}]
    approval_first = parse_spec({**SPEC_BODY, "steps": steps}).steps
    assert [track_at(approval_first, i) for i in range(3)] == ["shadow", "shadow", "shadow"]


SPEC_BODY: dict[str, object] = {
    "targetRef": {"name": "scheduler"},
    "candidate": {"image": "x"},
    "routing": {"provider": "replicas", "stableService": "a", "canaryService": "b"},
}


def test_analysis_due_and_next_check() -> None:
    driver = Driver()
    driver.tick(available=False)
    assert not analysis_due(SPEC, driver.status, driver.now)
    assert next_check_in(SPEC, driver.status, driver.now) == pytest.approx(600)
    driver.tick(1)
    assert analysis_due(SPEC, driver.status, driver.now)
    assert next_check_in(SPEC, driver.status, driver.now) == 0
    driver.analysed(after=3)
    assert not analysis_due(SPEC, driver.status, driver.now + 9)
    assert analysis_due(SPEC, driver.status, driver.now + 10)
    assert next_check_in(SPEC, driver.status, driver.now) == pytest.approx(10)
    driver.tick(1, commands=Commands(abort=True))
    assert next_check_in(SPEC, driver.status, driver.now) is None


def test_a_shortened_plan_promotes_and_an_edited_step_restarts() -> None:
    driver = in_canary(2)
    driver.spec = replace(SPEC, steps=SPEC.steps[:2])
    driver.tick(1)
    assert phase(driver) is Phase.PROMOTING
    driver = in_canary(2)
    driver.spec = replace(SPEC, steps=(*SPEC.steps[:2], SPEC.steps[3]))  # step 2 is now approval
    driver.tick(1)
    assert (driver.status.phase, driver.status.step) == (Phase.AWAITING_APPROVAL, 2)


def test_no_webhook_no_notifications() -> None:
    driver = Driver(spec=replace(SPEC, webhook_url=""))
    actions = driver.tick()
    assert notifications(actions) == []
    assert events(actions) == [("Normal", "Pending"), ("Normal", "Shadow")]


def test_the_state_machine_imports_no_cluster_or_prometheus_client() -> None:
    code = (
        "import sys, rollout_operator.state_machine, rollout_operator.spec;"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    assert not loaded & {"kubernetes", "kopf", "prometheus_api_client", "requests", "aiohttp"}
