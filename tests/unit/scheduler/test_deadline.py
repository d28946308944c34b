"""A greedy pass with a deadline: past it the legacy rule places what the policy left
(`ShopState.complete`, `greedy_schedule`), so a large request's answer is not late."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import RULES, dispatch_arrays, makespan_of
from jobshop_scheduler.instances.flexible import production_like, short_routes
from jobshop_scheduler.instances.taillard import taillard
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.model_store import load_model
from jobshop_scheduler.rl.state import ShopState

from .test_dispatch import flexible_problems

pytestmark = pytest.mark.unit

SHOPS = {
    "classic": lambda: taillard(12, 6, 101, 202, "t"),
    "flexible": lambda: production_like(25, seed=4),
    "short routes": lambda: short_routes(40, seed=2),
}
MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "full_production"


@pytest.fixture(scope="module")
def scorer() -> FastScorer:
    return load_model(MODEL_DIR).scorer


def first_candidate(state: ShopState) -> int:
    return int(np.flatnonzero(state.candidates)[0])


@pytest.mark.parametrize("shop", SHOPS)
@pytest.mark.parametrize("rule", RULES)
def test_completing_an_untouched_state_is_the_rules_whole_pass(shop: str, rule: str) -> None:
    cp = compile_problem(SHOPS[shop]())
    state = ShopState(cp)
    state.complete(rule)
    machines, starts = dispatch_arrays(cp, rule)
    assert state.op_machine.tolist() == machines and state.op_start.tolist() == starts
    assert state.done and state.rule_operations == cp.n_ops
    assert state.makespan == makespan_of(cp, machines, starts)


@pytest.mark.parametrize("shop", SHOPS)
@pytest.mark.parametrize(("window", "horizon"), [(0.0, 0), (0.5, 0), (0.0, 7), (1.0, 5)])
def test_completing_a_partial_pass_keeps_what_was_placed(
    shop: str, window: float, horizon: int
) -> None:
    problem = SHOPS[shop]()
    cp = compile_problem(problem)
    state = ShopState(cp, window, horizon)
    for _ in range(cp.n_ops // 3):
        state.dispatch(first_candidate(state))
    placed = np.flatnonzero(state.op_start >= 0)
    before = state.op_machine[placed].copy(), state.op_start[placed].copy()
    state.complete("mwkr")
    assert state.rule_operations == cp.n_ops - len(placed)
    assert np.array_equal(state.op_machine[placed], before[0])
    assert np.array_equal(state.op_start[placed], before[1])
    assert validate(problem, cp.to_schedule(state.op_machine, state.op_start)).ok
    assert state.makespan == makespan_of(cp, state.op_machine, state.op_start)


@settings(max_examples=200, deadline=None)
@given(
    problem=flexible_problems(),
    window=st.sampled_from([0.0, 0.5, 1.0]),
    horizon=st.integers(0, 3),
    rule=st.sampled_from(RULES),
    data=st.data(),
)
def test_completing_any_partial_state_gives_a_valid_plan_that_keeps_it(
    problem: Problem, window: float, horizon: int, rule: str, data: st.DataObject
) -> None:
    """Wherever a pass is cut (any window, horizon and earlier choices, release times, empty
    jobs), the rule's completion is a valid plan and moves nothing already placed."""
    cp = compile_problem(problem)
    state = ShopState(cp, window, horizon)
    for _ in range(data.draw(st.integers(0, cp.n_ops))):
        if state.done:
            break
        candidates = np.flatnonzero(state.candidates)
        state.dispatch(int(data.draw(st.sampled_from(candidates.tolist()))))
    placed = np.flatnonzero(state.op_start >= 0)
    before = state.op_machine[placed].copy(), state.op_start[placed].copy()
    state.complete(rule)
    assert state.done and state.rule_operations == cp.n_ops - len(placed)
    assert np.array_equal(state.op_machine[placed], before[0])
    assert np.array_equal(state.op_start[placed], before[1])
    assert validate(problem, cp.to_schedule(state.op_machine, state.op_start)).ok
    assert state.makespan == makespan_of(cp, state.op_machine, state.op_start)


def passes(cp: CompiledProblem, scorer: FastScorer, **deadline: float) -> ShopState:
    return greedy_schedule(cp, scorer, 0, finish_rules=("spt",), **deadline)


def test_a_deadline_in_time_changes_nothing_and_a_spent_one_is_the_rules_plan(
    scorer: FastScorer,
) -> None:
    cp = compile_problem(production_like(30, seed=7))
    whole = passes(cp, scorer)
    assert whole.rule_operations == 0
    in_time = passes(cp, scorer, deadline=float("inf"))
    assert np.array_equal(in_time.op_start, whole.op_start) and in_time.rule_operations == 0
    spent = passes(cp, scorer, deadline=0.0)
    assert spent.rule_operations == cp.n_ops
    assert spent.op_start.tolist() == dispatch_arrays(cp, "spt")[1]


def test_a_pass_cut_midway_is_the_policys_start_and_the_rules_end(
    scorer: FastScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = production_like(30, seed=7)
    cp = compile_problem(problem)
    whole = passes(cp, scorer)
    # a clock that passes the deadline at the 41st decision, and what the policy had placed
    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks) >= 40))
    complete, placed = ShopState.complete, []

    def snapshot(state: ShopState, rule: str) -> None:
        placed.append(np.flatnonzero(state.op_start >= 0))
        complete(state, rule)

    monkeypatch.setattr(ShopState, "complete", snapshot)
    cut = passes(cp, scorer, deadline=0.5)
    assert len(placed[0]) >= 40 and cut.rule_operations == cp.n_ops - len(placed[0])
    assert validate(problem, cp.to_schedule(cut.op_machine, cut.op_start)).ok
    assert not np.array_equal(cut.op_start, whole.op_start)
    # the policy's placements are the uncut pass's, the rest is the rule's
    assert np.array_equal(cut.op_start[placed[0]], whole.op_start[placed[0]])
    assert np.array_equal(cut.op_machine[placed[0]], whole.op_machine[placed[0]])


def test_a_cut_pass_is_finished_by_each_rule_that_fits_and_the_shortest_kept(
    scorer: FastScorer,
) -> None:
    """From the same cut point every rule finishes its own copy; past `finish_due` only the
    first rule runs, so the answer is never later than one completion."""
    cp = compile_problem(production_like(40, seed=3))
    rules = ("mwkr", "spt", "mor")
    each = {rule: greedy_schedule(cp, scorer, deadline=0.0, finish_rules=(rule,)) for rule in rules}
    best = greedy_schedule(cp, scorer, deadline=0.0, finish_rules=rules)
    assert best.makespan == min(state.makespan for state in each.values())
    assert best.rule_operations == each["mwkr"].rule_operations > 0
    hurried = greedy_schedule(cp, scorer, deadline=0.0, finish_rules=rules, finish_due=0.0)
    assert np.array_equal(hurried.op_start, each["mwkr"].op_start)
    assert len({state.makespan for state in each.values()}) > 1  # the rules do differ here
