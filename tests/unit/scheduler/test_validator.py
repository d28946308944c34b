"""The schedule validator rejects every kind of violation and measures plans correctly."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.domain.model import (
    Alternative,
    Assignment,
    Job,
    Operation,
    Problem,
    Schedule,
)
from jobshop_scheduler.domain.validator import (
    KINDS,
    ProblemError,
    ScheduleInvalid,
    SizeLimits,
    ValidationReport,
    ensure_valid,
    unscheduled_jobs,
    validate,
    validate_problem,
)
from jobshop_scheduler.instances.flexible import production_like

pytestmark = pytest.mark.unit

SMALL = Path(__file__).resolve().parents[3] / "examples" / "requests" / "small.json"

# J1: A (M1:3 | M2:4) -> B (M2:2), released 0, due 3, priority 2
# J2: C (M1:2), released 1, due 4, priority 1
PROBLEM = Problem(
    machines=("M1", "M2"),
    jobs=(
        Job(
            "J1",
            (
                Operation("A", (Alternative("M1", 3), Alternative("M2", 4))),
                Operation("B", (Alternative("M2", 2),)),
            ),
            release_time=0,
            due_date=3,
            priority=2,
        ),
        Job("J2", (Operation("C", (Alternative("M1", 2),)),), release_time=1, due_date=4),
    ),
)
A = Assignment("J1", "A", "M1", 0, 3)
B = Assignment("J1", "B", "M2", 3, 5)
C = Assignment("J2", "C", "M1", 3, 5)


def check(*assignments: Assignment) -> ValidationReport:
    return validate(PROBLEM, Schedule(assignments))


def kinds(report: ValidationReport) -> set[str]:
    return {v.kind for v in report.violations}


def test_a_correct_schedule_passes() -> None:
    report = check(A, B, C)
    assert report.ok
    assert report.violations == ()
    assert report.completion_rate == 1.0
    assert ensure_valid(PROBLEM, Schedule((A, B, C))) == report


def test_metrics_match_the_hand_computation() -> None:
    report = check(A, B, C)
    assert report.makespan == 5
    # J1 ends at 5, due 3: 2 late x priority 2; J2 ends at 5, due 4: 1 late x priority 1.
    assert (report.total_tardiness, report.weighted_tardiness, report.tardy_jobs) == (3, 5, 2)
    # M1 is busy [0,3) + [3,5) = 5 of 5; M2 is busy [3,5) = 2 of 5.
    assert report.utilisation == {"M1": 1.0, "M2": 0.4}
    assert report.mean_utilisation == pytest.approx(0.7)


def test_jobs_done_on_time_are_not_tardy() -> None:
    relaxed = replace(PROBLEM, jobs=tuple(replace(job, due_date=100) for job in PROBLEM.jobs))
    report = validate(relaxed, Schedule((A, B, C)))
    assert (report.total_tardiness, report.weighted_tardiness, report.tardy_jobs) == (0, 0, 0)


def test_missing_operation() -> None:
    report = check(A, B)
    assert kinds(report) == {"missing"}
    (v,) = report.violations
    assert (v.job_id, v.operation_id) == ("J2", "C")
    assert report.completion_rate == 0.5
    assert report.total_tardiness == 2  # a job with a missing operation has no completion time


def test_duplicate_operation() -> None:
    report = check(A, B, C, Assignment("J2", "C", "M2", 6, 8))
    assert kinds(report) == {"duplicate"}
    assert report.completion_rate == 0.5


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (Assignment("J9", "C", "M1", 5, 7), "job 'J9'"),
        (Assignment("J2", "Z", "M1", 5, 7), "operation 'Z'"),
        (Assignment("J2", "C", "M9", 3, 5), "machine 'M9'"),
    ],
)
def test_unknown_job_operation_or_machine(bad: Assignment, fragment: str) -> None:
    others = (A, B) if bad.operation_id == "C" and bad.job_id == "J2" else (A, B, C)
    report = check(*others, bad)
    assert kinds(report) == {"unknown"}
    assert fragment in report.violations[0].message


def test_precedence_inside_a_job() -> None:
    report = check(A, Assignment("J1", "B", "M2", 2, 4), C)
    assert kinds(report) == {"precedence"}
    assert report.violations[0].operation_id == "B"


def test_machine_overlap_marks_both_jobs() -> None:
    report = check(A, B, Assignment("J2", "C", "M1", 2, 4))
    assert kinds(report) == {"overlap"}
    assert "J1/A" in report.violations[0].message
    assert report.completion_rate == 0.0


def test_overlap_with_an_earlier_long_operation_is_found() -> None:
    problem = Problem(
        ("M1",),
        tuple(
            Job(j, (Operation("o", (Alternative("M1", d),)),))
            for j, d in [("x", 10), ("y", 1), ("z", 1)]
        ),
    )
    schedule = Schedule(
        (
            Assignment("x", "o", "M1", 0, 10),
            Assignment("y", "o", "M1", 1, 2),
            Assignment("z", "o", "M1", 5, 6),  # inside x, though y ended before it starts
        )
    )
    report = validate(problem, schedule)
    assert [v.job_id for v in report.of_kind("overlap")] == ["y", "z"]


def test_machine_not_eligible() -> None:
    report = check(A, Assignment("J1", "B", "M1", 5, 7), C)
    assert kinds(report) == {"eligibility"}


def test_wrong_duration() -> None:
    report = check(A, B, Assignment("J2", "C", "M1", 3, 6))
    assert kinds(report) == {"duration"}
    assert "takes 3, but 2" in report.violations[0].message


def test_start_before_release() -> None:
    report = check(
        Assignment("J1", "A", "M2", 0, 4),
        Assignment("J1", "B", "M2", 4, 6),
        Assignment("J2", "C", "M1", 0, 2),
    )
    assert kinds(report) == {"release"}
    assert report.violations[0].job_id == "J2"


@pytest.mark.parametrize(("start", "end"), [(-1, 1), (7, 5)])
def test_negative_interval(start: int, end: int) -> None:
    report = check(A, B, Assignment("J2", "C", "M1", start, end))
    assert kinds(report) == {"negative"}


def test_every_kind_has_a_test_above() -> None:
    assert set(KINDS) == {
        "missing",
        "duplicate",
        "unknown",
        "precedence",
        "overlap",
        "eligibility",
        "duration",
        "release",
        "negative",
    }


def test_ensure_valid_names_the_first_violations() -> None:
    schedule = Schedule(tuple(Assignment("J9", f"o{i}", "M1", 0, 1) for i in range(8)))
    with pytest.raises(ScheduleInvalid, match=r"11 violation\(s\): unknown J9/o0") as info:
        ensure_valid(PROBLEM, schedule)
    assert "... and 6 more" in str(info.value)
    assert len(info.value.report.violations) == 11  # 8 unknown + 3 missing


def test_unscheduled_jobs_lists_requested_jobs_once() -> None:
    report = check(A, Assignment("J1", "B", "M2", 2, 4), Assignment("J9", "X", "M1", 0, 1))
    assert [job for job, _ in unscheduled_jobs(PROBLEM, report)] == ["J1", "J2"]


def test_empty_problem_and_schedule() -> None:
    report = validate(Problem((), ()), Schedule(()))
    assert report.ok
    assert (report.makespan, report.completion_rate, report.mean_utilisation) == (0, 1.0, 0.0)


def _greedy(problem: Problem) -> Schedule:
    """A valid (if poor) schedule: jobs in order, each op on its first machine, as early as free."""
    free: dict[str, int] = dict.fromkeys(problem.machines, 0)
    out = []
    for job in problem.jobs:
        ready = job.release_time
        for op in job.operations:
            alt = op.alternatives[0]
            start = max(ready, free[alt.machine_id])
            ready = free[alt.machine_id] = start + alt.duration
            out.append(Assignment(job.id, op.id, alt.machine_id, start, ready))
    return Schedule(tuple(out))


def test_fast_on_a_production_sized_schedule() -> None:
    problem = production_like(170, seed=1)
    schedule = _greedy(problem)
    started = time.perf_counter()
    report = validate(problem, schedule)
    elapsed = time.perf_counter() - started
    assert report.ok, report.violations[:3]
    assert 0 < report.mean_utilisation <= 1
    assert elapsed < 1.0


def test_fast_when_everything_collides() -> None:
    problem = production_like(170, seed=2)
    crammed = Schedule(
        tuple(replace(a, start=0, end=a.end - a.start) for a in _greedy(problem).assignments)
    )
    started = time.perf_counter()
    report = validate(problem, crammed)
    assert time.perf_counter() - started < 2.0
    assert report.completion_rate < 0.1
    assert {"overlap", "precedence"} <= {v.kind for v in report.violations}


# --- validate_problem ---------------------------------------------------------------------


def small() -> Problem:
    return load_problem(SMALL)


def with_job(problem: Problem, index: int, job: Job) -> Problem:
    jobs = list(problem.jobs)
    jobs[index] = job
    return replace(problem, jobs=tuple(jobs))


def with_op(problem: Problem, job_index: int, op_index: int, op: Operation) -> Problem:
    job = problem.jobs[job_index]
    ops = list(job.operations)
    ops[op_index] = op
    return with_job(problem, job_index, replace(job, operations=tuple(ops)))


def fields(errors: list[ProblemError]) -> list[str]:
    return [e.field for e in errors]


def test_the_example_request_is_valid() -> None:
    assert validate_problem(small()) == []


def test_generated_instances_are_valid() -> None:
    assert validate_problem(production_like(170, seed=3)) == []


def test_duplicate_ids() -> None:
    p = small()
    p = replace(p, machines=(*p.machines, "M2"))
    p = with_job(p, 2, replace(p.jobs[2], id="J1"))
    p = with_op(p, 1, 2, replace(p.jobs[1].operations[2], id="J2-1"))
    assert fields(validate_problem(p)) == [
        "machines[3].id",
        "jobs[1].operations[2].id",
        "jobs[2].id",
    ]


def test_unknown_and_repeated_machines_in_alternatives() -> None:
    p = small()
    op = p.jobs[3].operations[1]
    p = with_op(
        p,
        3,
        1,
        replace(op, alternatives=(Alternative("M7", 3), *op.alternatives, op.alternatives[0])),
    )
    errors = validate_problem(p)
    assert fields(errors) == [
        "jobs[3].operations[1].alternatives[0].machine_id",
        "jobs[3].operations[1].alternatives[3].machine_id",
    ]
    assert "unknown machine 'M7'" in errors[0].message
    assert "twice" in errors[1].message


@pytest.mark.parametrize("duration", [0, -5])
def test_non_positive_duration(duration: int) -> None:
    p = small()
    op = p.jobs[1].operations[2]
    p = with_op(
        p, 1, 2, replace(op, alternatives=(op.alternatives[0], Alternative("M2", duration)))
    )
    errors = validate_problem(p)
    assert fields(errors) == ["jobs[1].operations[2].alternatives[1].duration"]
    assert (
        str(errors[0])
        == f"jobs[1].operations[2].alternatives[1].duration: must be positive, got {duration}"
    )


def test_empty_jobs_operations_and_alternatives() -> None:
    p = small()
    p = with_job(p, 0, replace(p.jobs[0], operations=()))
    p = with_op(p, 2, 0, replace(p.jobs[2].operations[0], alternatives=()))
    assert fields(validate_problem(p)) == [
        "jobs[0].operations",
        "jobs[2].operations[0].alternatives",
    ]
    assert fields(validate_problem(Problem((), ()))) == ["machines", "jobs"]


def test_empty_ids() -> None:
    p = small()
    p = replace(p, machines=("", *p.machines[1:]))
    p = with_job(p, 1, replace(p.jobs[1], id=""))
    assert "machines[0].id" in fields(validate_problem(p))
    assert "jobs[1].id" in fields(validate_problem(p))


def test_release_due_date_and_priority() -> None:
    p = small()
    p = with_job(p, 0, replace(p.jobs[0], release_time=-1))
    p = with_job(p, 2, replace(p.jobs[2], release_time=50, due_date=49, priority=0))
    assert fields(validate_problem(p)) == [
        "jobs[0].release_time",
        "jobs[2].due_date",
        "jobs[2].priority",
    ]


def test_absurd_horizon() -> None:
    p = small()
    op = p.jobs[0].operations[0]
    p = with_op(p, 0, 0, replace(op, alternatives=(Alternative("M1", 10**9),)))
    errors = validate_problem(p)
    assert fields(errors) == ["jobs"]
    assert "10000000" in errors[0].message


def test_too_many_jobs() -> None:
    p = small()
    assert validate_problem(p, SizeLimits(jobs=4)) == []
    assert validate_problem(p, SizeLimits(jobs=3)) == [
        ProblemError("jobs", "4 jobs exceed this server's limit of 3")
    ]


def test_too_many_operations() -> None:
    p = small()
    assert validate_problem(p, SizeLimits(operations=p.operation_count)) == []
    assert validate_problem(p, SizeLimits(operations=p.operation_count - 1)) == [
        ProblemError(
            "jobs",
            f"{p.operation_count} operations exceed this server's limit of "
            f"{p.operation_count - 1}: split the request",
        )
    ]


def test_too_large_a_table_of_operations_by_machines() -> None:
    """The compiled problem holds a cell per operation and machine: a short request naming
    many machines is refused before it is compiled, with the way out in the message."""
    p = small()
    cells = p.operation_count * len(p.machines)
    assert validate_problem(p, SizeLimits(table_cells=cells)) == []
    errors = validate_problem(p, SizeLimits(10, 10**6, cells - 1))
    assert fields(errors) == ["machines"]
    assert errors[0].message == (
        f"{p.operation_count} operations x {len(p.machines)} machines make a table of {cells} "
        f"cells, over this server's limit of {cells - 1}: list only the machines the "
        "operations can use, or split the request"
    )
    # the job limit is checked first, alone, and the operations are not counted then
    assert fields(validate_problem(p, SizeLimits(jobs=1, table_cells=1))) == ["jobs"]

    def uncounted() -> int:
        raise AssertionError("counted the operations of a request already refused")

    assert SizeLimits(jobs=1).errors(4, uncounted, 3)[0].field == "jobs"
