"""Protobuf <-> domain conversion: optional fields, the policy enum, and the response."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobshop_scheduler.api import pb
from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.service.convert import (
    UnknownPolicy,
    plan_to_pb,
    policy_from_pb,
    problem_from_pb,
    problem_to_pb,
    response_from_pb,
)

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "requests" / "small.json"


def test_problem_round_trips_through_the_message() -> None:
    for problem in (load_problem(EXAMPLE), production_like(15, seed=2)):
        assert problem_from_pb(problem_to_pb(problem)) == problem


def test_absent_optional_fields_take_the_json_defaults() -> None:
    request = pb.ScheduleRequest(
        machines=[pb.Machine(id="M1")],
        jobs=[
            pb.Job(
                id="J1",
                operations=[
                    pb.Operation(id="o", alternatives=[pb.Alternative(machine_id="M1", duration=3)])
                ],
            ),
            pb.Job(id="J2", release_time=0, due_date=0, priority=0),
        ],
    )
    first, second = problem_from_pb(request).jobs
    assert (first.release_time, first.due_date, first.priority) == (0, None, 1)
    assert (second.release_time, second.due_date, second.priority) == (0, 0, 0)  # set, kept


def test_policy_enum_maps_to_planner_names() -> None:
    assert [policy_from_pb(v) for v in (0, 1, 2)] == ["auto", "ppo", "heuristic"]
    with pytest.raises(UnknownPolicy) as err:
        policy_from_pb(9)
    assert err.value.error.field == "policy" and "unknown value 9" in str(err.value)
    with pytest.raises(ValueError, match="not in the API"):
        problem_to_pb(load_problem(EXAMPLE), "spt")


def test_plan_to_pb_carries_every_response_field() -> None:
    plan = Planner(None).plan(load_problem(EXAMPLE), "heuristic")
    message = plan_to_pb(plan, latency_ms=12.3456)
    response = response_from_pb(message)
    expected = {**plan.response(), "latency_ms": 12.346}
    assert response == expected
    assert message.policy_used == "mwkr" and message.baseline_makespan == plan.baseline_makespan
