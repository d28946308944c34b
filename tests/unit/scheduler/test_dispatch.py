"""Dispatching rules: reference makespans, feasibility, and the fast path against a naive one."""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem, Schedule
from jobshop_scheduler.heuristics import (
    RULES,
    compile_problem,
    dispatch,
    dispatch_arrays,
    makespan_of,
)
from jobshop_scheduler.instances import load_taillard, taillard

pytestmark = pytest.mark.unit

REFERENCE = {
    ("ta01", "spt"): 1462,
    ("ta01", "mor"): 1438,
    ("ta01", "mwkr"): 1491,
    ("ta05", "spt"): 1618,
    ("ta05", "mor"): 1448,
    ("ta05", "mwkr"): 1494,
    ("ta10", "spt"): 1697,
    ("ta10", "mor"): 1582,
    ("ta10", "mwkr"): 1534,
}


def assert_feasible(problem: Problem, schedule: Schedule) -> None:
    """Every operation once, on an eligible machine, in job order, after release, no overlap."""
    by_op = {a.operation_id: a for a in schedule.assignments}
    assert len(by_op) == len(schedule.assignments) == problem.operation_count
    per_machine = defaultdict(list)
    for job in problem.jobs:
        previous_end = job.release_time
        for op in job.operations:
            a = by_op[op.id]
            durations = {alt.machine_id: alt.duration for alt in op.alternatives}
            assert a.job_id == job.id
            assert a.machine_id in durations, f"{op.id} on ineligible {a.machine_id}"
            assert a.end - a.start == durations[a.machine_id]
            assert a.start >= previous_end, f"{op.id} starts before its predecessor/release"
            previous_end = a.end
            per_machine[a.machine_id].append((a.start, a.end))
    for machine, intervals in per_machine.items():
        intervals.sort()
        for (_, end), (start, _) in pairwise(intervals):
            assert start >= end, f"overlap on {machine}"


def naive_dispatch(problem: Problem, rule: str) -> dict[str, tuple[str, int]]:
    """The module docstring's definition, rescanning every job each step: op -> (machine, start)."""
    index = {m: k for k, m in enumerate(problem.machines)}
    next_op = [0] * len(problem.jobs)
    ready = [job.release_time for job in problem.jobs]
    free = dict.fromkeys(problem.machines, 0)
    placed: dict[str, tuple[str, int]] = {}
    while len(placed) < problem.operation_count:
        best: tuple[int, float, int, int, str] | None = None
        for j, job in enumerate(problem.jobs):
            if next_op[j] == len(job.operations):
                continue
            alts = job.operations[next_op[j]].alternatives
            t = max(ready[j], min(free[a.machine_id] for a in alts))
            dur, _, machine = min(
                (a.duration, index[a.machine_id], a.machine_id)
                for a in alts
                if free[a.machine_id] <= t
            )
            left = job.operations[next_op[j] :]
            key: float = {
                "spt": dur,
                "mor": -len(left),
                "mwkr": -sum(min(a.duration for a in op.alternatives) for op in left),
                "fifo": ready[j],
                "edd": math.inf if job.due_date is None else job.due_date,
            }[rule]
            if best is None or (t, key, j) < best[:3]:
                best = (t, key, j, dur, machine)
        assert best is not None
        t, _, j, dur, machine = best
        placed[problem.jobs[j].operations[next_op[j]].id] = (machine, t)
        free[machine] = ready[j] = t + dur
        next_op[j] += 1
    return placed


@st.composite
def flexible_problems(draw: st.DrawFn) -> Problem:
    """Small flexible job shops with release and due dates, including empty jobs."""
    machines = tuple(f"M{k}" for k in range(draw(st.integers(1, 4))))
    jobs = []
    for j in range(draw(st.integers(0, 6))):
        ops = []
        for o in range(draw(st.integers(0, 4))):
            eligible = draw(st.lists(st.sampled_from(machines), min_size=1, unique=True))
            alts = tuple(Alternative(m, draw(st.integers(1, 9))) for m in eligible)
            ops.append(Operation(f"J{j}-{o}", alts))
        due = draw(st.none() | st.integers(0, 60))
        jobs.append(Job(f"J{j}", tuple(ops), draw(st.integers(0, 20)), due))
    return Problem(machines, tuple(jobs))


@pytest.mark.parametrize(("instance", "rule"), sorted(REFERENCE))
def test_reference_makespans_on_taillard(instance: str, rule: str) -> None:
    assert dispatch(load_taillard(instance), rule).makespan == REFERENCE[(instance, rule)]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("instance", ["ta01", "ta71"])
def test_every_rule_is_feasible_on_taillard(instance: str, rule: str) -> None:
    problem = load_taillard(instance)
    schedule = dispatch(problem, rule)
    assert_feasible(problem, schedule)
    cp = compile_problem(problem)
    machines, starts = dispatch_arrays(cp, rule)
    assert makespan_of(cp, machines, starts) == schedule.makespan


@settings(max_examples=150, deadline=None)
@given(problem=flexible_problems(), rule=st.sampled_from(RULES))
def test_fast_dispatch_equals_the_naive_definition(problem: Problem, rule: str) -> None:
    schedule = dispatch(problem, rule)
    assert_feasible(problem, schedule)
    got = {a.operation_id: (a.machine_id, a.start) for a in schedule.assignments}
    assert got == naive_dispatch(problem, rule)


@pytest.mark.parametrize("rule", RULES)
def test_naive_definition_agrees_on_a_random_classic_instance(rule: str) -> None:
    problem = taillard(12, 6, 4242, 2424)
    got = {a.operation_id: (a.machine_id, a.start) for a in dispatch(problem, rule).assignments}
    assert got == naive_dispatch(problem, rule)


def _tiny_flexible() -> Problem:
    a1 = Operation("A1", (Alternative("M1", 3), Alternative("M2", 5)))
    a2 = Operation("A2", (Alternative("M2", 2),))
    b1 = Operation("B1", (Alternative("M1", 4),))
    b2 = Operation("B2", (Alternative("M1", 1), Alternative("M2", 1)))
    return Problem(("M1", "M2"), (Job("A", (a1, a2)), Job("B", (b1, b2), release_time=2)))


def test_tiny_flexible_instance_with_release_times() -> None:
    problem = _tiny_flexible()
    schedule = dispatch(problem, "spt")
    assert_feasible(problem, schedule)
    placed = {a.operation_id: (a.machine_id, a.start, a.end) for a in schedule.assignments}
    # A1: both machines free at 0, shorter M1 wins. At t=3 A2 (2) beats B1 (4) under SPT.
    # B2 ties at 7 on both machines with equal durations: lowest machine index.
    assert placed == {
        "A1": ("M1", 0, 3),
        "A2": ("M2", 3, 5),
        "B1": ("M1", 3, 7),
        "B2": ("M1", 7, 8),
    }
    assert schedule.makespan == 8


def test_non_delay_takes_the_free_slower_machine_over_waiting() -> None:
    problem = Problem(
        machines=("M1", "M2"),
        jobs=(
            Job("A", (Operation("A1", (Alternative("M1", 10),)),)),
            Job("B", (Operation("B1", (Alternative("M1", 1), Alternative("M2", 5))),)),
        ),
    )
    placed = {
        a.operation_id: (a.machine_id, a.start) for a in dispatch(problem, "fifo").assignments
    }
    assert placed == {"A1": ("M1", 0), "B1": ("M2", 0)}  # FIFO tie: lowest job index first


def test_edd_serves_earliest_due_first_and_undated_last() -> None:
    def job(name: str, due: int | None) -> Job:
        return Job(name, (Operation(f"{name}-1", (Alternative("M1", 2),)),), due_date=due)

    jobs = (job("late", 100), job("none", None), job("soon", 10))
    schedule = dispatch(Problem(("M1",), jobs), "edd")
    order = [a.job_id for a in sorted(schedule.assignments, key=lambda a: a.start)]
    assert order == ["soon", "late", "none"]


def test_rules_are_case_insensitive_and_mopnr_is_mor() -> None:
    problem = load_taillard("ta01")
    assert dispatch(problem, "MOPNR") == dispatch(problem, "mor") == dispatch(problem, "MOR")


def test_unknown_rule_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'lpt'.*spt, mor, mwkr, fifo, edd"):
        dispatch(load_taillard("ta01"), "lpt")


def test_empty_problem_gives_an_empty_schedule() -> None:
    problem = Problem(("M1",), (Job("J", ()),))
    assert dispatch(problem, "spt").assignments == ()


def test_compiled_problem_layout_and_helpers() -> None:
    cp = compile_problem(_tiny_flexible())
    assert (cp.n_jobs, cp.n_machines, cp.n_ops) == (2, 2, 4)
    assert cp.job_op_start.tolist() == [0, 2, 4]
    assert cp.op_job.tolist() == [0, 0, 1, 1]
    assert cp.op_position.tolist() == [0, 1, 0, 1]
    assert cp.alternatives[0] == ((0, 3), (1, 5))
    assert cp.duration_matrix.tolist() == [[3, 5], [0, 2], [4, 0], [1, 1]]
    assert cp.op_min_duration.tolist() == [3, 2, 4, 1]
    assert cp.op_mean_duration.tolist() == [4.0, 2.0, 4.0, 1.0]
    assert cp.work_from.tolist() == [5, 2, 5, 1]
    assert cp.job_total_work().tolist() == [5, 5]
    assert cp.ops_remaining(1, 1) == 1
    assert (cp.remaining_work(0, 1), cp.remaining_work(0, 2)) == (2, 0)
    assert cp.release_time.tolist() == [0, 2]
    assert np.isinf(cp.due_date).all()
    assert not cp.is_classic
    assert cp.horizon() == 2 + 5 + 2 + 4 + 1
    assert not cp.work_from.flags.writeable
    with pytest.raises(ValueError, match="not eligible"):
        cp.to_schedule([1, 1, 1, 0], [0, 0, 0, 0])  # B1 cannot run on M2


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        (Problem(("M1", "M1"), ()), "unique"),
        (Problem(("M1",), (Job("J", (Operation("o", ()),)),)), "no eligible"),
        (Problem(("M1",), (Job("J", (Operation("o", (Alternative("M9", 1),)),)),)), "unknown"),
        (Problem(("M1",), (Job("J", (Operation("o", (Alternative("M1", -1),)),)),)), "negative"),
        (
            Problem(("M1",), (Job("J", (Operation("o", (Alternative("M1", 1),) * 2),)),)),
            "twice",
        ),
    ],
)
def test_compile_rejects_unschedulable_input(problem: Problem, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_problem(problem)
