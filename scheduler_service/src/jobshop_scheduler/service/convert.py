"""Protobuf messages <-> domain objects, at the edge of the gRPC service.

The domain never sees protobuf; the servicer converts once on the way in and once on the way
out. The response is built from ``Plan.response()``, the same dict ``schedctl schedule --local
--json`` prints, so the local and remote answers cannot drift apart field by field. Proto3
``optional`` fields are read with ``HasField``: an absent release time is 0, an absent due date
is no due date, an absent priority is 1, exactly as in the JSON request.
"""

from __future__ import annotations

from typing import Any

from jobshop_scheduler.api import pb
from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem
from jobshop_scheduler.domain.problem_rules import ProblemError
from jobshop_scheduler.planner import Plan

POLICY_NAMES: dict[int, str] = {
    pb.POLICY_AUTO: "auto",
    pb.POLICY_PPO: "ppo",
    pb.POLICY_HEURISTIC: "heuristic",
}
POLICY_VALUES = {name: value for value, name in POLICY_NAMES.items()}
SEARCH_FIELDS = (
    "search_stage", "lower_bound", "greedy_makespan", "search_iterations", "time_budget_ms",
    "greedy_cut_operations",
)  # fmt: skip


class UnknownPolicy(ValueError):
    """A Policy enum number this server does not know (proto3 enums are open)."""

    def __init__(self, value: int) -> None:
        self.error = ProblemError("policy", f"unknown value {value}; valid: {sorted(POLICY_NAMES)}")
        super().__init__(str(self.error))


def policy_from_pb(value: int) -> str:
    """The planner's policy name for a Policy enum value."""
    try:
        return POLICY_NAMES[value]
    except KeyError:
        raise UnknownPolicy(value) from None


def problem_from_pb(request: pb.ScheduleRequest) -> Problem:
    """The request's problem; semantic checks are ``validate_problem``'s job, not this one's.

    Alternatives are frozen values and a shop has few distinct (machine, duration) pairs, so
    equal ones share one object: building a frozen dataclass is most of the conversion's cost,
    which counts in the call's budget (9 µs an operation on production-like shops before).
    """
    shared: dict[tuple[str, int], Alternative] = {}
    jobs = []
    for job in request.jobs:
        operations = []
        for op in job.operations:
            alternatives = []
            for alt in op.alternatives:
                key = (alt.machine_id, alt.duration)
                value = shared.get(key)
                if value is None:
                    value = shared[key] = Alternative(*key)
                alternatives.append(value)
            operations.append(Operation(op.id, tuple(alternatives)))
        jobs.append(
            Job(
                id=job.id,
                operations=tuple(operations),
                release_time=job.release_time if job.HasField("release_time") else 0,
                due_date=job.due_date if job.HasField("due_date") else None,
                priority=job.priority if job.HasField("priority") else 1,
            )
        )
    machines = tuple(m.id for m in request.machines)
    return Problem(machines=machines, jobs=tuple(jobs), request_id=request.request_id)


def _job_to_pb(job: Job) -> pb.Job:
    message = pb.Job(
        id=job.id,
        operations=[
            pb.Operation(
                id=op.id,
                alternatives=[
                    pb.Alternative(machine_id=a.machine_id, duration=a.duration)
                    for a in op.alternatives
                ],
            )
            for op in job.operations
        ],
        release_time=job.release_time,
        priority=job.priority,
    )
    if job.due_date is not None:
        message.due_date = job.due_date
    return message


def problem_to_pb(
    problem: Problem, policy: str = "auto", time_budget_ms: int | None = None
) -> pb.ScheduleRequest:
    """The request a client sends for ``problem`` (``policy``: auto, ppo or heuristic)."""
    if policy not in POLICY_VALUES:
        raise ValueError(f"policy {policy!r} is not in the API; valid: {sorted(POLICY_VALUES)}")
    request = pb.ScheduleRequest(
        request_id=problem.request_id,
        machines=[pb.Machine(id=m) for m in problem.machines],
        jobs=[_job_to_pb(job) for job in problem.jobs],
        policy=POLICY_VALUES[policy],  # type: ignore[arg-type]  # the stubs want the enum type
    )
    if time_budget_ms is not None:
        request.time_budget_ms = time_budget_ms
    return request


def time_budget_from_pb(request: pb.ScheduleRequest) -> int | None:
    """The request's search budget in ms; None when the client left it to the server."""
    return request.time_budget_ms if request.HasField("time_budget_ms") else None


def response_to_pb(response: dict[str, Any]) -> pb.ScheduleResponse:
    """A response dict (``Plan.response()``'s shape) as the protobuf message."""
    return pb.ScheduleResponse(
        request_id=response["request_id"],
        assignments=[pb.Assignment(**a) for a in response["assignments"]],
        makespan=response["makespan"],
        baseline_makespan=response["baseline_makespan"],
        completion_rate=response["completion_rate"],
        unscheduled=[pb.Unscheduled(**u) for u in response["unscheduled"]],
        model_version=response["model_version"],
        latency_ms=response["latency_ms"],
        policy_used=response["policy_used"],
        **{key: response[key] for key in SEARCH_FIELDS},
    )


def plan_to_pb(plan: Plan, latency_ms: float | None = None) -> pb.ScheduleResponse:
    """The answer for ``plan``; ``latency_ms`` overrides the planner's own timing."""
    response = plan.response()
    if latency_ms is not None:
        response["latency_ms"] = round(latency_ms, 3)
    return response_to_pb(response)


def response_from_pb(message: pb.ScheduleResponse) -> dict[str, Any]:
    """The response JSON of docs/request-format.md, as ``schedctl schedule --json`` prints it."""
    return {
        "request_id": message.request_id,
        "assignments": [
            {
                "job_id": a.job_id,
                "operation_id": a.operation_id,
                "machine_id": a.machine_id,
                "start": a.start,
                "end": a.end,
            }
            for a in message.assignments
        ],
        "makespan": message.makespan,
        "baseline_makespan": message.baseline_makespan,
        "completion_rate": message.completion_rate,
        "unscheduled": [{"job_id": u.job_id, "reason": u.reason} for u in message.unscheduled],
        "model_version": message.model_version,
        "latency_ms": message.latency_ms,
        "policy_used": message.policy_used,
        **{key: getattr(message, key) for key in SEARCH_FIELDS},
    }
