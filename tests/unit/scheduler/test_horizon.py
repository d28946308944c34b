"""The horizon (`state.ShopState`): on a request larger than the policy's table, at most that
many jobs are open at once, in release and due-date order, on one shared timeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.instances.taillard import taillard
from jobshop_scheduler.rl.state import ShopState, admission_order

pytestmark = pytest.mark.unit


def mwkr(state: ShopState) -> int:
    """The candidate with the most work left (lowest index on ties)."""
    candidates = np.flatnonzero(state.candidates)
    cp = state.cp
    return int(candidates[np.argmax(cp.work_from[state.next_op[candidates]])])


def drive(state: ShopState, seen: list[tuple[np.ndarray, int]] | None = None) -> ShopState:
    """Dispatch by `mwkr` to the end; `seen` gets each state's open jobs and finished count."""
    ends = state.cp.job_op_start[1:]
    while not state.done:
        if seen is not None:
            seen.append((np.flatnonzero(state.active), int((state.next_op == ends).sum())))
        state.dispatch(mwkr(state))
    return state


def test_admission_follows_release_then_due_date_then_request_order() -> None:
    def job(name: str, release: int, due: int | None) -> Job:
        operation = Operation(f"{name}-1", (Alternative("m0", 5),))
        return Job(name, (operation,), release_time=release, due_date=due)

    jobs = (job("a", 10, None), job("b", 0, 50), job("c", 0, None), job("d", 0, 20),
            job("e", 10, 5), job("f", 0, 50))  # fmt: skip
    cp = compile_problem(Problem(("m0",), jobs))
    assert [jobs[j].id for j in admission_order(cp)] == ["d", "b", "f", "c", "e", "a"]


@pytest.mark.parametrize("horizon", [1, 7, 29])
def test_at_most_horizon_jobs_are_open_and_every_operation_is_placed(horizon: int) -> None:
    problem = production_like(30, seed=5)
    cp = compile_problem(problem)
    order = admission_order(cp)
    seen: list[tuple[np.ndarray, int]] = []
    state = drive(ShopState(cp, horizon=horizon), seen)
    assert max(len(active) for active, _ in seen) == horizon
    for active, finished in seen:  # a job opens only when one before it has finished
        assert np.isin(active, order[: horizon + finished]).all()
    schedule = cp.to_schedule(state.op_machine, state.op_start)
    assert validate(problem, schedule).ok


@pytest.mark.parametrize("window", [0.0, 0.5])
def test_a_horizon_of_every_job_is_the_plain_pass(window: float) -> None:
    cp = compile_problem(taillard(12, 6, 840612802, 398197754, "t"))
    plain = drive(ShopState(cp, window))
    for horizon in (12, 40):
        same = drive(ShopState(cp, window, horizon))
        assert same.horizon == 0
        assert np.array_equal(same.op_start, plain.op_start)
    fewer = drive(ShopState(cp, window, 5))
    assert fewer.done and not np.array_equal(fewer.op_start, plain.op_start)


def test_waiting_jobs_count_in_the_lower_bound_and_copies_are_independent() -> None:
    cp = compile_problem(taillard(20, 5, 840612802, 398197754, "t"))
    state, plain = ShopState(cp, horizon=4), ShopState(cp)
    assert state.lower_bound() == plain.lower_bound()
    assert int(state.active.sum()) == 4
    twin = state.copy()
    drive(twin)
    assert twin.done and state.scheduled == 0 and int(state.active.sum()) == 4
    assert drive(state).makespan == twin.makespan


def test_a_job_without_operations_takes_no_place() -> None:
    problem = production_like(6, seed=1)
    empty = Job("empty", (), release_time=0, due_date=0)  # admitted first
    cp = compile_problem(dataclasses.replace(problem, jobs=(empty, *problem.jobs[1:])))
    seen: list[tuple[np.ndarray, int]] = []
    drive(ShopState(cp, horizon=2), seen)
    assert len(seen[0][0]) == 2


def test_negative_horizon_is_refused() -> None:
    cp = compile_problem(production_like(3, seed=1))
    with pytest.raises(ValueError, match="horizon"):
        ShopState(cp, horizon=-1)
