"""Independent checks of a schedule against its problem, and of a request before it is solved.

Every policy (PPO or heuristic) is untrusted: its output is re-checked here before it is served
or counted, so a bug in a policy shows up as a violation instead of a wrong plan on the shop
floor. ``validate_problem`` turns a malformed request into field-named errors the gRPC server
maps to INVALID_ARGUMENT; ``validate`` is O(n log n) (one sort per machine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobshop_scheduler.domain.model import Assignment, Job, Problem, Schedule
from jobshop_scheduler.domain.problem_rules import (
    MAX_HORIZON,
    ProblemError,
    SizeLimits,
    validate_problem,
)

__all__ = [
    "KINDS",
    "MAX_HORIZON",
    "ProblemError",
    "ScheduleInvalid",
    "SizeLimits",
    "ValidationReport",
    "Violation",
    "ensure_valid",
    "unscheduled_jobs",
    "validate",
    "validate_problem",
]

KINDS = (
    "missing",
    "duplicate",
    "unknown",
    "precedence",
    "overlap",
    "eligibility",
    "duration",
    "release",
    "negative",
)


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    message: str
    job_id: str = ""
    operation_id: str = ""

    def __str__(self) -> str:
        where = f"{self.job_id}/{self.operation_id}" if self.operation_id else self.job_id
        return f"{self.kind} {where}: {self.message}" if where else f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Violations plus the plan-quality metrics the rollout compares between versions."""

    violations: tuple[Violation, ...]
    makespan: int
    total_tardiness: int
    weighted_tardiness: int
    tardy_jobs: int
    utilisation: Mapping[str, float] = field(default_factory=dict)
    mean_utilisation: float = 0.0
    completion_rate: float = 1.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def of_kind(self, kind: str) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.kind == kind)


class ScheduleInvalid(ValueError):
    """Raised by ``ensure_valid``; carries the whole report for logging and metrics."""

    def __init__(self, report: ValidationReport, shown: int = 5) -> None:
        self.report = report
        lines = [str(v) for v in report.violations[:shown]]
        more = len(report.violations) - shown
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__(f"{len(report.violations)} violation(s): " + "; ".join(lines))


OpKey = tuple[str, str]


@dataclass(slots=True)
class _Check:
    """Working state of one ``validate`` call."""

    problem: Problem
    jobs: dict[str, Job]
    durations: dict[OpKey, dict[str, int]]
    violations: list[Violation] = field(default_factory=list)
    bad_jobs: set[str] = field(default_factory=set)
    placed: dict[OpKey, Assignment] = field(default_factory=dict)
    claimed: set[OpKey] = field(default_factory=set)  # had an assignment, valid or not

    def add(self, kind: str, message: str, job_id: str = "", operation_id: str = "") -> None:
        self.violations.append(Violation(kind, message, job_id, operation_id))
        if job_id in self.jobs:
            self.bad_jobs.add(job_id)


def _index(problem: Problem) -> _Check:
    jobs = {job.id: job for job in problem.jobs}
    durations = {
        (job.id, op.id): {alt.machine_id: alt.duration for alt in op.alternatives}
        for job in problem.jobs
        for op in job.operations
    }
    return _Check(problem, jobs, durations)


def _check_identity(check: _Check, a: Assignment, machines: frozenset[str]) -> bool:
    """Unknown, duplicate and negative checks; False means the assignment is not placed."""
    key = (a.job_id, a.operation_id)
    if a.job_id not in check.jobs:
        check.add("unknown", f"job {a.job_id!r} is not in the problem", a.job_id, a.operation_id)
        return False
    if key not in check.durations:
        msg = f"operation {a.operation_id!r} is not in job {a.job_id!r}"
        check.add("unknown", msg, a.job_id, a.operation_id)
        return False
    check.claimed.add(key)
    if a.machine_id not in machines:
        msg = f"machine {a.machine_id!r} is not in the problem"
        check.add("unknown", msg, a.job_id, a.operation_id)
        return False
    if key in check.placed:
        check.add("duplicate", "operation scheduled more than once", a.job_id, a.operation_id)
        return False
    if a.start < 0 or a.end < a.start:
        msg = f"interval [{a.start}, {a.end}) is negative"
        check.add("negative", msg, a.job_id, a.operation_id)
        return False
    return True


def _check_timing(check: _Check, a: Assignment) -> None:
    """Eligibility, duration and release of one placed assignment."""
    eligible = check.durations[(a.job_id, a.operation_id)]
    if a.machine_id not in eligible:
        msg = f"machine {a.machine_id!r} is not eligible (eligible: {sorted(eligible)})"
        check.add("eligibility", msg, a.job_id, a.operation_id)
    elif a.end - a.start != eligible[a.machine_id]:
        msg = f"takes {a.end - a.start}, but {eligible[a.machine_id]} on {a.machine_id!r}"
        check.add("duration", msg, a.job_id, a.operation_id)
    release = check.jobs[a.job_id].release_time
    if a.start < release:
        msg = f"starts at {a.start}, before the job's release at {release}"
        check.add("release", msg, a.job_id, a.operation_id)


def _check_jobs(check: _Check) -> None:
    """Missing operations and precedence inside each job's chain."""
    for job in check.problem.jobs:
        previous: Assignment | None = None
        for op in job.operations:
            a = check.placed.get((job.id, op.id))
            if a is None:
                if (job.id, op.id) not in check.claimed:
                    check.add("missing", "operation is not scheduled", job.id, op.id)
                continue
            if previous is not None and a.start < previous.end:
                msg = (
                    f"starts at {a.start}, before {previous.operation_id!r} ends at {previous.end}"
                )
                check.add("precedence", msg, job.id, op.id)
            previous = a


def _check_machines(check: _Check) -> dict[str, int]:
    """Overlaps per machine (sorted sweep); returns each machine's busy time."""
    by_machine: dict[str, list[Assignment]] = defaultdict(list)
    for a in check.placed.values():
        by_machine[a.machine_id].append(a)
    busy: dict[str, int] = {}
    for machine, items in by_machine.items():
        items.sort(key=lambda a: (a.start, a.end))
        busy[machine] = sum(a.end - a.start for a in items)
        latest = items[0]
        for a in items[1:]:
            if a.start < latest.end:
                msg = (
                    f"overlaps {latest.job_id}/{latest.operation_id} on {machine!r} "
                    f"([{a.start}, {a.end}) vs [{latest.start}, {latest.end}))"
                )
                check.add("overlap", msg, a.job_id, a.operation_id)
                check.bad_jobs.add(latest.job_id)
            if a.end > latest.end:
                latest = a
    return busy


def _tardiness(check: _Check) -> tuple[int, int, int]:
    """Total, priority-weighted and count of tardy jobs, over jobs with every op placed."""
    total = weighted = tardy = 0
    for job in check.problem.jobs:
        if job.due_date is None or not job.operations:
            continue
        ends = [check.placed.get((job.id, op.id)) for op in job.operations]
        if any(a is None for a in ends):
            continue
        completion = max(a.end for a in ends if a is not None)
        late = max(0, completion - job.due_date)
        total += late
        weighted += job.priority * late
        tardy += late > 0
    return total, weighted, tardy


def validate(problem: Problem, schedule: Schedule) -> ValidationReport:
    """Check every constraint of ``schedule`` and measure it; never raises on bad input."""
    check = _index(problem)
    machines = frozenset(problem.machines)
    for a in schedule.assignments:
        if _check_identity(check, a, machines):
            check.placed[(a.job_id, a.operation_id)] = a
            _check_timing(check, a)
    _check_jobs(check)
    busy = _check_machines(check)
    makespan = schedule.makespan
    utilisation = {m: (busy.get(m, 0) / makespan if makespan > 0 else 0.0) for m in machines}
    mean = sum(utilisation.values()) / len(utilisation) if utilisation else 0.0
    total, weighted, tardy = _tardiness(check)
    n_jobs = len(problem.jobs)
    completion = (n_jobs - len(check.bad_jobs)) / n_jobs if n_jobs else 1.0
    return ValidationReport(
        violations=tuple(check.violations),
        makespan=makespan,
        total_tardiness=total,
        weighted_tardiness=weighted,
        tardy_jobs=tardy,
        utilisation=dict(sorted(utilisation.items())),
        mean_utilisation=mean,
        completion_rate=completion,
    )


def ensure_valid(problem: Problem, schedule: Schedule) -> ValidationReport:
    """Validate and raise ``ScheduleInvalid`` naming the first violations; else the report."""
    report = validate(problem, schedule)
    if not report.ok:
        raise ScheduleInvalid(report)
    return report


def unscheduled_jobs(problem: Problem, report: ValidationReport) -> list[tuple[str, str]]:
    """(job_id, first violation) per requested job not validly scheduled: the response's list."""
    requested = {job.id for job in problem.jobs}
    seen: dict[str, str] = {}
    for v in report.violations:
        if v.job_id in requested and v.job_id not in seen:
            seen[v.job_id] = str(v)
    return list(seen.items())
