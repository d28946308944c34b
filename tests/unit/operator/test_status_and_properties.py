"""The status JSON round trip, and properties of advance() over random histories."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollout_operator.actions import EmitEvent, EnsureCandidate, ScaleDownCandidate, SetTraffic
from rollout_operator.model import (
    TERMINAL_PHASES,
    AnalysisReport,
    Commands,
    Counters,
    Phase,
    RolloutSpec,
    Verdict,
)
from rollout_operator.state_machine import RETRYABLE_PHASES, advance
from rollout_operator.status import Condition, RolloutStatus, format_time, parse_time
from tests.unit.operator.rollout_cases import (
    INTERVAL_S,
    SPEC,
    T0,
    Driver,
    events,
    make_spec,
    no_data,
    report,
)

pytestmark = pytest.mark.unit

ROLLBACK_SPEC = make_spec(noData="rollback", noDataLimit=3)


def through_json(status: RolloutStatus) -> RolloutStatus:
    return RolloutStatus.from_dict(json.loads(json.dumps(status.to_dict())))


# --- the JSON shape -----------------------------------------------------------------------------


def test_an_empty_status_is_a_new_rollout() -> None:
    assert RolloutStatus.from_dict(None) == RolloutStatus()
    assert RolloutStatus.from_dict({}) == RolloutStatus()


def test_the_status_json_shape() -> None:
    driver = Driver()
    driver.tick()
    driver.analysed(latency_p95_seconds=7.0, completion_rate=0.8)
    data = driver.status.to_dict()
    assert set(data) == {
        "phase",
        "step",
        "weight",
        "mirrorPercent",
        "stepStartedAt",
        "analysedSince",
        "candidateUnavailableSince",
        "routePendingSince",
        "counters",
        "activeWarnings",
        "rollbackReason",
        "conditions",
        "lastAnalysis",
        "message",
        "stableRevision",
        "candidateRevision",
        "observedGeneration",
        "lastCommand",
        "history",
        "signOffs",
        "approvalBaseline",
        "verification",
        "shadowVerdict",
        "gate",
    }
    assert data["phase"] == "Shadow"
    assert data["stepStartedAt"] == "2027-01-15T08:00:00Z"
    assert data["analysedSince"] == "2027-01-15T08:00:00Z"
    assert data["candidateUnavailableSince"] is None  # null: a merge patch removes the field
    breaches = {"completion-rate": 1, "latency-p95-seconds": 0, "shadow-makespan-regression": 0}
    assert data["counters"] == {"breaches": breaches, "noData": 0}
    assert data["activeWarnings"] == ["latency-p95-seconds"]
    assert [c["type"] for c in data["conditions"]] == ["Progressing", "Healthy", "Warning"]
    assert data["conditions"][1] == {
        "type": "Healthy",
        "status": "False",
        "reason": "ThresholdBreached",
        "message": "completion-rate 0.80 < 0.90 (1/2)",
        "lastTransitionTime": "2027-01-15T08:00:10Z",
    }
    analysis = data["lastAnalysis"]
    assert analysis["time"] == "2027-01-15T08:00:10Z"
    assert analysis["metrics"][0] == {
        "name": "completion-rate",
        "kind": "rollback",
        "value": 0.8,
        "threshold": 0.9,
        "comparison": "below",
        "verdict": "breach",
        "detail": "",
    }
    assert [m["kind"] for m in analysis["metrics"]] == [
        "rollback",
        "rollback",
        "warn",
        "warn",
        "shadowCompare",
    ]
    assert through_json(driver.status) == driver.status


def test_times_are_rfc3339_utc() -> None:
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(1.25) == "1970-01-01T00:00:01.250000Z"
    assert parse_time("1970-01-01T00:00:01.25Z") == 1.25
    assert parse_time("1970-01-01T01:00:00+01:00") == 0
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_time("yesterday")


def test_no_data_values_are_null() -> None:
    driver = Driver()
    driver.tick()
    driver.tick(INTERVAL_S, no_data(driver.now + INTERVAL_S))
    metrics = driver.status.to_dict()["lastAnalysis"]["metrics"]
    assert {m["value"] for m in metrics} == {None}
    assert {m["verdict"] for m in metrics} == {"noData"}
    assert through_json(driver.status) == driver.status


micros = st.integers(min_value=0, max_value=4_000_000_000_000_000).map(lambda us: us / 1e6)
names = st.sampled_from(["completion-rate", "error-rate", "latency-p95-seconds"])
statuses = st.builds(
    RolloutStatus,
    phase=st.sampled_from(Phase),
    step=st.integers(0, 10),
    weight=st.integers(0, 100),
    mirror_percent=st.integers(0, 100),
    step_started_at=st.none() | micros,
    candidate_unavailable_since=st.none() | micros,
    counters=st.builds(
        Counters,
        breaches=st.dictionaries(names, st.integers(0, 9)),
        no_data=st.integers(0, 99),
    ),
    active_warnings=st.lists(names, unique=True).map(tuple),
    rollback_reason=st.text(),
    conditions=st.lists(
        st.builds(
            Condition,
            type=st.sampled_from(["Progressing", "Healthy", "Warning"]),
            status=st.sampled_from(["True", "False", "Unknown"]),
            reason=st.text(max_size=10),
            message=st.text(max_size=20),
            last_transition=micros,
        ),
        max_size=3,
        unique_by=lambda c: c.type,
    ).map(tuple),
    last_analysis=st.none()
    | micros.map(lambda t: report(t, completion_rate=0.5, latency_p95_seconds=None)),
    message=st.text(),
    stable_revision=st.text(max_size=8),
    observed_generation=st.none() | st.integers(1, 2**40),
    last_command=st.text(max_size=20),
)


@given(statuses)
def test_status_round_trip(status: RolloutStatus) -> None:
    assert through_json(status) == status
    assert through_json(status).to_dict() == status.to_dict()


# --- properties over random histories -----------------------------------------------------------

ROUNDS = ["none", "good", "low-completion", "slow", "no-data", "partial", "warn", "shadow-worse"]
COMMANDS = [Commands()] * 6 + [
    Commands(approve=True),
    Commands(abort=True),
    Commands(retry=True),
    Commands(promote=True),
]
ops = st.tuples(
    st.sampled_from([0.0, 1.0, 5.0, 10.0, 50.0, 100.0, 700.0]),
    st.sampled_from(ROUNDS),
    st.sampled_from(COMMANDS),
    st.sampled_from([True, True, True, False]),
    st.sampled_from([True, True, False]),
)


def make_round(kind: str, time: float, spec: RolloutSpec) -> AnalysisReport | None:
    return {
        "none": lambda: None,
        "good": lambda: report(time, spec),
        "low-completion": lambda: report(time, spec, completion_rate=0.5),
        "slow": lambda: report(time, spec, latency_p95_seconds=30.0),
        "no-data": lambda: no_data(time, spec),
        "partial": lambda: report(time, spec, latency_p95_seconds=None),
        "warn": lambda: report(time, spec, memory_utilisation=0.99),
        "shadow-worse": lambda: report(time, spec, shadow=0.2),
    }[kind]()


def lacks_data(analysis: AnalysisReport) -> bool:
    return any(r.verdict is Verdict.NO_DATA for r in analysis.rollback)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([SPEC, ROLLBACK_SPEC]), st.lists(ops, max_size=60))
def test_invariants_over_random_histories(
    spec: RolloutSpec, history: list[tuple[float, str, Commands, bool, bool]]
) -> None:
    plan_weights = {0, 100} | {getattr(s, "weight", 0) for s in spec.steps}
    mirrors = {0} | {getattr(s, "percent", 0) for s in spec.steps}
    status, now = RolloutStatus(), T0
    for after, kind, commands, available, stable in history:
        now += after
        analysis = make_round(kind, now, spec)
        new, actions = advance(
            spec,
            status,
            now,
            analysis,
            commands,
            candidate_available=available,
            stable_available=stable,
        )
        assert new.weight in plan_weights
        assert new.mirror_percent in mirrors
        assert through_json(new) == new
        retried = commands.retry and status.phase in RETRYABLE_PHASES
        if status.phase in TERMINAL_PHASES and not retried:
            assert (new, actions) == (status, [])
        if retried:
            assert (new.step, new.counters) == (0, Counters())
            assert new.phase in (Phase.PENDING, Phase.SHADOW)  # on, when the candidate is up
        else:
            assert new.step >= status.step
        assert sum(isinstance(a, SetTraffic) for a in actions) <= 1
        assert sum(isinstance(a, EnsureCandidate) for a in actions) <= 1
        if new.phase is not status.phase:
            assert any(isinstance(a, EmitEvent) for a in actions)
        if new.phase is Phase.ROLLED_BACK and status.phase is not Phase.ROLLED_BACK:
            assert SetTraffic(0, 0) in actions
            assert ScaleDownCandidate() in actions
            assert new.rollback_reason
        if new.phase is Phase.SUCCEEDED and status.phase is not Phase.SUCCEEDED:
            assert status.phase is Phase.PROMOTING
        entered_promoting = new.phase is Phase.PROMOTING and status.phase is not Phase.PROMOTING
        if entered_promoting and not commands.promote:  # the last step ended: never without data
            assert new.last_analysis is not None
            assert not lacks_data(new.last_analysis)
            assert status.step_started_at is not None
            assert new.last_analysis.time > status.step_started_at
        # The same call again (a retried reconcile; the command was recorded as handled)
        # changes and announces nothing.
        again, repeated = advance(
            spec,
            new,
            now,
            analysis,
            Commands(),
            candidate_available=available,
            stable_available=stable,
        )
        assert again == new
        assert events(repeated) == []
        status = new


def test_the_property_history_reaches_every_phase() -> None:
    """A sanity check that the strategy's ingredients can reach the far phases at all."""
    driver = Driver()
    driver.tick()
    reached = {driver.status.phase}
    while driver.status.phase is not Phase.SUCCEEDED:
        commands = Commands(approve=driver.status.phase is Phase.AWAITING_APPROVAL)
        driver.tick(INTERVAL_S, make_round("good", driver.now + INTERVAL_S, SPEC), commands)
        reached.add(driver.status.phase)
    assert reached >= {Phase.SHADOW, Phase.CANARY, Phase.AWAITING_APPROVAL, Phase.SUCCEEDED}
    assert replace(driver.status, message="") != driver.status
