"""Semantic checks of a request, each naming the offending field by its JSON path.

The codec only guarantees the shape (types, required keys); these rules catch what is well typed
but meaningless: duplicate ids, unknown machines, non-positive durations, impossible dates. The
gRPC server returns them as INVALID_ARGUMENT field violations, so a client can fix its request
without reading server logs. Re-exported by ``validator``.
"""

from __future__ import annotations

from collections.abc import Callable
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
    op: Operation, job_path: str, j: int, machines: frozenset[str], errors: list[ProblemError]
) -> None:
    """Paths are formatted only for an error (`_op_path`): most operations have none, and two
    paths formatted per operation were most of the time a large request's check took."""
    if not op.alternatives:
        path = f"{_op_path(job_path, j)}.alternatives"
        errors.append(ProblemError(path, "at least one machine is required"))
    seen: set[str] = set()
    for k, alt in enumerate(op.alternatives):
        if alt.machine_id not in machines:
            msg = f"unknown machine {alt.machine_id!r}"
            path = f"{_op_path(job_path, j)}.alternatives[{k}].machine_id"
            errors.append(ProblemError(path, msg))
        elif alt.machine_id in seen:
            msg = f"machine {alt.machine_id!r} listed twice for one operation"
            path = f"{_op_path(job_path, j)}.alternatives[{k}].machine_id"
            errors.append(ProblemError(path, msg))
        seen.add(alt.machine_id)
        if alt.duration <= 0:
            msg = f"must be positive, got {alt.duration}"
            path = f"{_op_path(job_path, j)}.alternatives[{k}].duration"
            errors.append(ProblemError(path, msg))
        elif alt.duration > MAX_HORIZON:
            msg = f"{alt.duration} is over the horizon limit of {MAX_HORIZON}"
            path = f"{_op_path(job_path, j)}.alternatives[{k}].duration"
            errors.append(ProblemError(path, msg))


def _op_path(job_path: str, j: int) -> str:
    return f"{job_path}.operations[{j}]"


def _check_operations(
    job: Job, path: str, machines: frozenset[str], errors: list[ProblemError]
) -> None:
    if not job.operations:
        errors.append(ProblemError(f"{path}.operations", "a job needs at least one operation"))
    first: dict[str, int] = {}
    for j, op in enumerate(job.operations):
        if not op.id:
            errors.append(ProblemError(f"{_op_path(path, j)}.id", "must not be empty"))
        elif op.id in first:
            msg = f"duplicate operation id {op.id!r} in job (first at operations[{first[op.id]}])"
            errors.append(ProblemError(f"{_op_path(path, j)}.id", msg))
        else:
            first[op.id] = j
        _check_alternatives(op, path, j, machines, errors)


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
    work = 0
    for job in problem.jobs:  # loops, not nested max() generators: 3x faster on large requests
        for op in job.operations:
            slowest = 0
            for alt in op.alternatives:
                if alt.duration > slowest:  # noqa: PLR1730 - max() calls are the cost avoided
                    slowest = alt.duration
            work += slowest
    return latest_release + work


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """A server's limits on a request's size (None: none), checked before anything else.

    Each bounds what a request costs before it can be refused for anything else:
    - `jobs`: the policy's passes and the rules scan every job at every step;
    - `operations`: converting and checking a request cost 3-4 µs and up to 300 bytes an
      operation, so the 64 MB a message may hold (4 million one-alternative operations) would
      take seconds and over a gigabyte;
    - `table_cells`, operations x machines: the compiled problem holds a duration and an
      eligibility cell for each (`heuristics.compiled`), about 9 bytes, so a request of a few
      hundred kB that names 20 000 machines for 5000 operations took 1.1 GB.
    """

    jobs: int | None = None
    operations: int | None = None
    table_cells: int | None = None

    def errors(self, jobs: int, operations: Callable[[], int], machines: int) -> list[ProblemError]:
        """The first limit a request of these counts breaks (`operations` is counted only
        when the job count is within its limit), as its one error; empty when none is."""
        if self.jobs is not None and jobs > self.jobs:
            return [ProblemError("jobs", f"{jobs} jobs exceed this server's limit of {self.jobs}")]
        count = operations()
        if self.operations is not None and count > self.operations:
            msg = (
                f"{count} operations exceed this server's limit of {self.operations}: split "
                "the request"
            )
            return [ProblemError("jobs", msg)]
        cells = count * machines
        if self.table_cells is not None and cells > self.table_cells:
            msg = (
                f"{count} operations x {machines} machines make a table of {cells} cells, over "
                f"this server's limit of {self.table_cells}: list only the machines the "
                "operations can use, or split the request"
            )
            return [ProblemError("machines", msg)]
        return []


def validate_problem(problem: Problem, limits: SizeLimits | None = None) -> list[ProblemError]:
    """Every rule the request breaks (empty when it can be scheduled); never raises. A request
    over one of the `limits` gets that error alone, before any other check."""
    if limits is not None:
        oversize = limits.errors(
            len(problem.jobs), lambda: problem.operation_count, len(problem.machines)
        )
        if oversize:
            return oversize  # refuse before spending work on a huge request
    errors: list[ProblemError] = []
    _check_machines(problem, errors)
    _check_jobs(problem, errors)
    bound = horizon_bound(problem)
    if bound > MAX_HORIZON:
        msg = f"latest release plus total work is {bound}, over the limit of {MAX_HORIZON}"
        errors.append(ProblemError("jobs", msg))
    return errors
