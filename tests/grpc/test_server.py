"""The scheduler server end to end on loopback: scheduling, auth, validation, deadlines, errors,
health, reflection, mirroring and the fault gate, with real clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.domain.model import Assignment as DomainAssignment
from jobshop_scheduler.domain.model import Problem, Schedule
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.heuristics.dispatch import dispatch
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.service.convert import problem_to_pb
from jobshop_scheduler.service.mirror import MIRRORED_FROM_HEADER
from jobshop_scheduler.service.servicer import INTERNAL_DETAILS, TRACK_HEADER

from .conftest import (
    MAIN_MAX_JOBS,
    MAIN_MAX_OPERATIONS,
    MAIN_MAX_TABLE_CELLS,
    TRACK,
    MainServer,
)

pytestmark = pytest.mark.grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "requests" / "small.json"
TIMEOUT = 60.0


def call(
    address: str,
    request: pb.ScheduleRequest,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = TIMEOUT,
) -> pb.ScheduleResponse:
    with grpc.insecure_channel(address) as channel:
        response: pb.ScheduleResponse = pb_grpc.SchedulerStub(channel).Schedule(
            request, metadata=metadata, timeout=timeout
        )
    return response


def refused(
    address: str,
    request: pb.ScheduleRequest,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = TIMEOUT,
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(address, request, metadata, timeout)
    failed = cast(grpc.Call, err.value)
    return failed.code(), str(failed.details())


def schedule_of(response: pb.ScheduleResponse) -> Schedule:
    return Schedule(
        tuple(
            DomainAssignment(a.job_id, a.operation_id, a.machine_id, a.start, a.end)
            for a in response.assignments
        )
    )


def example() -> Problem:
    return load_problem(EXAMPLE)


def test_time_budget_buys_a_shorter_plan(main_server: MainServer) -> None:
    problem = production_like(40, seed=11)
    request = problem_to_pb(problem, "ppo", time_budget_ms=300)
    response = call(main_server.address, request, main_server.auth)
    assert validate(problem, schedule_of(response)).ok
    assert response.time_budget_ms == 300
    assert response.search_stage in ("greedy", "portfolio", "sampling", "tabu", "cpsat")
    assert response.lower_bound <= response.makespan <= response.greedy_makespan
    assert response.makespan <= response.baseline_makespan
    assert response.search_iterations > 0
    greedy = call(main_server.address, problem_to_pb(problem, "ppo"), main_server.auth)
    assert greedy.time_budget_ms == 0  # the server default: no search
    assert greedy.greedy_makespan == response.greedy_makespan
    # the greedy plan, or the shortest baseline rule's where shorter (the legacy one among them)
    rules = [dispatch(problem, rule).makespan for rule in ("spt", "mor", "mwkr")]
    assert greedy.baseline_makespan == rules[-1]
    assert greedy.makespan == min(greedy.greedy_makespan, *rules)
    rule_shorter = greedy.makespan < greedy.greedy_makespan
    assert greedy.search_stage == ("portfolio" if rule_shorter else "greedy")


@pytest.mark.parametrize(
    ("budget", "message"),
    [(-1, "time_budget_ms: must be >= 0"), (10**9, "time_budget_ms: 1000000000 is over")],
)
def test_bad_time_budget_is_invalid_argument(
    main_server: MainServer, budget: int, message: str
) -> None:
    request = problem_to_pb(example(), "auto", time_budget_ms=budget)
    code, details = refused(main_server.address, request, main_server.auth)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details


def test_production_request_is_scheduled_by_ppo(main_server: MainServer) -> None:
    problem = production_like(170, seed=7)
    response = call(main_server.address, problem_to_pb(problem, "ppo"), main_server.auth)
    report = validate(problem, schedule_of(response))
    assert report.ok, report.violations[:3]
    assert report.completion_rate == 1.0 == response.completion_rate
    assert response.policy_used == "ppo"
    assert response.model_version == "test-tiny-1"
    assert response.request_id == problem.request_id
    assert response.makespan == report.makespan and response.baseline_makespan > 0
    assert not response.unscheduled
    assert response.latency_ms > 0


def test_answers_and_refusals_name_the_track_that_served_them(main_server: MainServer) -> None:
    with grpc.insecure_channel(main_server.address) as channel:
        stub = pb_grpc.SchedulerStub(channel)
        _, answered = stub.Schedule.with_call(
            problem_to_pb(example(), "heuristic"), metadata=main_server.auth, timeout=TIMEOUT
        )
        assert dict(answered.initial_metadata())[TRACK_HEADER] == TRACK
        with pytest.raises(grpc.RpcError) as err:
            stub.Schedule(pb.ScheduleRequest(), metadata=main_server.auth, timeout=TIMEOUT)
    refusal = cast(grpc.Call, err.value)
    assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refusal.initial_metadata())[TRACK_HEADER] == TRACK


def test_heuristic_policy_and_defaults_of_optional_fields(main_server: MainServer) -> None:
    request = problem_to_pb(example(), "heuristic")
    for job in request.jobs:  # absent: release 0, no due date, priority 1
        job.ClearField("release_time")
        job.ClearField("due_date")
        job.ClearField("priority")
    response = call(main_server.address, request, main_server.auth)
    assert response.policy_used == "mwkr"
    assert response.completion_rate == 1.0
    assert min(a.start for a in response.assignments) == 0


def test_missing_and_wrong_keys_are_unauthenticated(main_server: MainServer) -> None:
    request = problem_to_pb(example())
    assert refused(main_server.address, request)[0] == grpc.StatusCode.UNAUTHENTICATED
    key_id, secret = main_server.key.split(".")
    for wrong in (f"{key_id}.{secret[::-1]}", "not-a-key"):
        code, details = refused(main_server.address, request, [("x-api-key", wrong)])
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert wrong not in details
    bearer = [("authorization", f"Bearer {main_server.key}")]
    assert call(main_server.address, request, bearer).completion_rate == 1.0


def _edit(request: pb.ScheduleRequest, change: Callable[[pb.ScheduleRequest], Any]) -> None:
    change(request)


def _many_jobs(request: pb.ScheduleRequest) -> None:
    template = request.jobs[0]
    for i in range(MAIN_MAX_JOBS + 1 - len(request.jobs)):
        job = request.jobs.add()
        job.CopyFrom(template)
        job.id = f"extra-{i}"


def _machine_catalogue(request: pb.ScheduleRequest) -> None:
    """Every machine of a plant's catalogue, where the operations use a handful."""
    request.machines.extend(pb.Machine(id=f"catalogue-{k}") for k in range(MAIN_MAX_TABLE_CELLS))


def _long_job(request: pb.ScheduleRequest) -> None:
    """One job of more operations than the server takes (refused before it is converted)."""
    template = request.jobs[0].operations[0]
    for i in range(MAIN_MAX_OPERATIONS):
        op = request.jobs[0].operations.add()
        op.CopyFrom(template)
        op.id = f"long-{i}"


def _long_operations(request: pb.ScheduleRequest) -> None:
    for job in request.jobs:
        for op in job.operations:
            op.alternatives[0].duration = 10**9  # each allowed; together past the horizon


def _due_before_release(request: pb.ScheduleRequest) -> None:
    request.jobs[0].release_time = 50
    request.jobs[0].due_date = 10


VALIDATION_CASES: dict[str, tuple[Callable[[pb.ScheduleRequest], Any], str]] = {
    "duplicate job id": (
        lambda r: setattr(r.jobs[2], "id", "J1"),
        "jobs[2].id: duplicate job id 'J1'",
    ),
    "duplicate machine id": (
        lambda r: setattr(r.machines[1], "id", "M1"),
        "machines[1].id: duplicate machine id",
    ),
    "duplicate operation id": (
        lambda r: setattr(r.jobs[1].operations[2], "id", r.jobs[1].operations[0].id),
        "jobs[1].operations[2].id: duplicate operation id",
    ),
    "unknown machine": (
        lambda r: setattr(r.jobs[3].operations[0].alternatives[1], "machine_id", "M9"),
        "jobs[3].operations[0].alternatives[1].machine_id: unknown machine 'M9'",
    ),
    "zero duration": (
        lambda r: setattr(r.jobs[3].operations[0].alternatives[1], "duration", 0),
        "jobs[3].operations[0].alternatives[1].duration: must be positive",
    ),
    "negative duration": (
        lambda r: setattr(r.jobs[1].operations[2].alternatives[2], "duration", -5),
        "jobs[1].operations[2].alternatives[2].duration: must be positive, got -5",
    ),
    "empty job": (
        lambda r: r.jobs[2].ClearField("operations"),
        "jobs[2].operations: a job needs at least one operation",
    ),
    "operation without machines": (
        lambda r: r.jobs[0].operations[1].ClearField("alternatives"),
        "jobs[0].operations[1].alternatives: at least one machine is required",
    ),
    "no jobs": (lambda r: r.ClearField("jobs"), "jobs: at least one job is required"),
    "no machines": (lambda r: r.ClearField("machines"), "machines: at least one machine"),
    "too many jobs": (_many_jobs, f"jobs: {MAIN_MAX_JOBS + 1} jobs exceed"),
    "too many operations": (
        _long_job,
        f"jobs: {{}} operations exceed this server's limit of {MAIN_MAX_OPERATIONS}: split",
    ),
    "too many machines for the operations": (
        _machine_catalogue,
        f"machines make a table of {{}} cells, over this server's limit of {MAIN_MAX_TABLE_CELLS}",
    ),
    "absurd duration": (
        lambda r: setattr(r.jobs[0].operations[0].alternatives[0], "duration", 10**15),
        "jobs[0].operations[0].alternatives[0].duration: 1000000000000000 is over the horizon",
    ),
    "absurd total horizon": (_long_operations, "jobs: latest release plus total work"),
    "negative release": (
        lambda r: setattr(r.jobs[1], "release_time", -1),
        "jobs[1].release_time: must not be negative",
    ),
    "due before release": (_due_before_release, "jobs[0].due_date: 10 is before the release"),
    "zero priority": (
        lambda r: setattr(r.jobs[0], "priority", 0),
        "jobs[0].priority: must be from 1",
    ),
    "unknown policy": (lambda r: setattr(r, "policy", 7), "policy: unknown value 7"),
}


@pytest.mark.parametrize("case", VALIDATION_CASES, ids=list(VALIDATION_CASES))
def test_invalid_requests_name_the_field(main_server: MainServer, case: str) -> None:
    change, expected = VALIDATION_CASES[case]
    request = problem_to_pb(example())
    _edit(request, change)
    code, details = refused(main_server.address, request, main_server.auth)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    operations = sum(len(job.operations) for job in request.jobs)
    cells = operations * len(request.machines)
    assert expected.format(operations if "operations exceed" in expected else cells) in details


def test_health_is_serving_and_reflection_lists_the_scheduler(main_server: MainServer) -> None:
    with grpc.insecure_channel(main_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "scheduler.v1.Scheduler"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(stub.ServerReflectionInfo(iter([ask]), timeout=5))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"scheduler.v1.Scheduler", "grpc.health.v1.Health"} <= names


def test_deadline_exceeded_and_the_server_carries_on(main_server: MainServer) -> None:
    big = problem_to_pb(production_like(MAIN_MAX_JOBS, seed=4), "ppo")
    for timeout in (0.001, 0.05):  # before the handler runs / while planning
        code, _ = refused(main_server.address, big, main_server.auth, timeout=timeout)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert call(main_server.address, problem_to_pb(example()), main_server.auth).makespan > 0


def test_unexpected_errors_are_internal_and_generic(
    main_server: MainServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("password=hunter2 at /etc/secret/path")

    monkeypatch.setattr(Planner, "plan", broken)
    request = problem_to_pb(example())
    code, details = refused(main_server.address, request, main_server.auth)
    assert code == grpc.StatusCode.INTERNAL
    assert details == INTERNAL_DETAILS
    assert "hunter2" not in details and "/etc" not in details


def test_fault_injection_is_off_without_its_env_gate(main_server: MainServer) -> None:
    assert json.loads(main_server.faults_file.read_text())["error_rate"] == 1.0
    assert main_server.thread.running.servicer.faults is not None
    assert main_server.thread.running.servicer.faults.current() is None
    for i in range(3):
        problem = production_like(12, seed=i)
        response = call(main_server.address, problem_to_pb(problem), main_server.auth)
        assert response.completion_rate == 1.0 and not response.unscheduled


def test_answers_are_mirrored_to_the_shadow(main_server: MainServer) -> None:
    request = problem_to_pb(example())
    request.request_id = "mirror-me-1"
    call(main_server.address, request, main_server.auth)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = dict(main_server.shadow.received)
        if "mirror-me-1" in seen:
            assert seen["mirror-me-1"][MIRRORED_FROM_HEADER] == TRACK
            return
        time.sleep(0.05)
    pytest.fail(f"mirror never arrived; shadow saw {main_server.shadow.received[-3:]}")


def test_mirrored_requests_are_not_mirrored_again(main_server: MainServer) -> None:
    request = problem_to_pb(example())
    request.request_id = "already-a-copy"
    metadata = [*main_server.auth, (MIRRORED_FROM_HEADER, "stable")]
    call(main_server.address, request, metadata)
    time.sleep(0.5)
    assert "already-a-copy" not in dict(main_server.shadow.received)
