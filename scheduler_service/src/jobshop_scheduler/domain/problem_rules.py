"""Semantic checks of a request, each naming the offending field by its JSON path.

The codec only guarantees the shape (types, required keys); these rules catch what is well typed
but meaningless: duplicate ids, unknown machines, non-positive durations, impossible dates. The
gRPC server returns them as INVALID_ARGUMENT field violations, so a client can fix its request
without reading server logs. Re-exported by ``validator``.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobshop_scheduler.domain.model import Job, Operation, Problem

MAX_HORIZON = 10**9  # far beyond any plant horizon in minutes; guards int64 arithmetic downstream
MAX_PRIORITY = 2**31 - 1  # the proto's int32; a JSON request must not overflow the arrays either


@dataclass(frozen=True, slots=True)
class ProblemError:
    field: str  # e.g. "jobs[3].operations[1].alternatives[0].duration"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _check_machines(problem: Problem, errors: list[ProblemError]) -> None:
    if not problem.machines:
        errors.append(ProblemError("machines", "at least one machine is required"))
    first: dict[str, int] = {}
    for i, machine in enumerate(problem.machines):
        path = f"machines[{i}].id"
        if not machine:
            errors.append(ProblemError(path, "must not be empty"))
        elif machine in first:
            msg = f"duplicate machine id {machine!r} (first at machines[{first[machine]}])"
            errors.append(ProblemError(path, msg))
        else:
            first[machine] = i


def _check_alternatives(
    op: Operation, path: str, machines: frozenset[str], errors: list[ProblemError]
) -> None:
    if not op.alternatives:
        errors.append(ProblemError(f"{path}.alternatives", "at least one machine is required"))
    seen: set[str] = set()
    for k, alt in enumerate(op.alternatives):
        alt_path = f"{path}.alternatives[{k}]"
        if alt.machine_id not in machines:
            msg = f"unknown machine {alt.machine_id!r}"
            errors.append(ProblemError(f"{alt_path}.machine_id", msg))
        elif alt.machine_id in seen:
            msg = f"machine {alt.machine_id!r} listed twice for one operation"
            errors.append(ProblemError(f"{alt_path}.machine_id", msg))
        seen.add(alt.machine_id)
        if alt.duration <= 0:
            msg = f"must be positive, got {alt.duration}"
            errors.append(ProblemError(f"{alt_path}.duration", msg))
        elif alt.duration > MAX_HORIZON:
            msg = f"{alt.duration} is over the horizon limit of {MAX_HORIZON}"
            errors.append(ProblemError(f"{alt_path}.duration", msg))


def _check_operations(
    job: Job, path: str, machines: frozenset[str], errors: list[ProblemError]
) -> None:
    if not job.operations:
        errors.append(ProblemError(f"{path}.operations", "a job needs at least one operation"))
    first: dict[str, int] = {}
    for j, op in enumerate(job.operations):
        op_path = f"{path}.operations[{j}]"
        if not op.id:
            errors.append(ProblemError(f"{op_path}.id", "must not be empty"))
        elif op.id in first:
            msg = f"duplicate operation id {op.id!r} in job (first at operations[{first[op.id]}])"
            errors.append(ProblemError(f"{op_path}.id", msg))
        else:
            first[op.id] = j
        _check_alternatives(op, op_path, machines, errors)


def _check_job_fields(job: Job, path: str, errors: list[ProblemError]) -> None:
    if job.release_time < 0:
        msg = f"must not be negative, got {job.release_time}"
        errors.append(ProblemError(f"{path}.release_time", msg))
    elif job.release_time > MAX_HORIZON:
        msg = f"{job.release_time} is over the horizon limit of {MAX_HORIZON}"
        errors.append(ProblemError(f"{path}.release_time", msg))
    if job.due_date is not None and job.due_date < job.release_time:
        msg = f"{job.due_date} is before the release time {job.release_time}"
        errors.append(ProblemError(f"{path}.due_date", msg))
    if not 1 <= job.priority <= MAX_PRIORITY:
        msg = f"must be from 1 to {MAX_PRIORITY}, got {job.priority}"
        errors.append(ProblemError(f"{path}.priority", msg))


def _check_jobs(problem: Problem, errors: list[ProblemError]) -> None:
    if not problem.jobs:
        errors.append(ProblemError("jobs", "at least one job is required"))
    machines = frozenset(problem.machines)
    first: dict[str, int] = {}
    for i, job in enumerate(problem.jobs):
        path = f"jobs[{i}]"
        if not job.id:
            errors.append(ProblemError(f"{path}.id", "must not be empty"))
        elif job.id in first:
            msg = f"duplicate job id {job.id!r} (first at jobs[{first[job.id]}])"
            errors.append(ProblemError(f"{path}.id", msg))
        else:
            first[job.id] = i
        _check_job_fields(job, path, errors)
        _check_operations(job, path, machines, errors)


def horizon_bound(problem: Problem) -> int:
    """Latest release plus all work at its slowest: no sane schedule ends later than this."""
    latest_release = max((max(job.release_time, 0) for job in problem.jobs), default=0)
    work = sum(
        max((max(alt.duration, 0) for alt in op.alternatives), default=0)
        for job in problem.jobs
        for op in job.operations
    )
    return latest_release + work


def validate_problem(
    problem: Problem, max_jobs: int | None = None, max_table_cells: int | None = None
) -> list[ProblemError]:
    """Every rule the request breaks (empty when it can be scheduled); never raises.

    `max_table_cells` bounds operations x machines: the compiled problem holds a duration and
    an eligibility cell for each (`heuristics.compiled`), about 9 bytes, and the dispatchers
    scan a machine row per operation, so a request of a few hundred kB that lists 20 000
    machines for 5000 operations would take 1 GB and seconds before any answer.
    """
    if max_jobs is not None and len(problem.jobs) > max_jobs:
        msg = f"{len(problem.jobs)} jobs exceed this server's limit of {max_jobs}"
        return [ProblemError("jobs", msg)]  # refuse before spending work on a huge request
    cells = problem.operation_count * len(problem.machines)
    if max_table_cells is not None and cells > max_table_cells:
        msg = (
            f"{problem.operation_count} operations x {len(problem.machines)} machines make a "
            f"table of {cells} cells, over this server's limit of {max_table_cells}: list only "
            "the machines the operations can use, or split the request"
        )
        return [ProblemError("machines", msg)]
    errors: list[ProblemError] = []
    _check_machines(problem, errors)
    _check_jobs(problem, errors)
    bound = horizon_bound(problem)
    if bound > MAX_HORIZON:
        msg = f"latest release plus total work is {bound}, over the limit of {MAX_HORIZON}"
        errors.append(ProblemError("jobs", msg))
    return errors
