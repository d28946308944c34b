"""Anytime search: spend a time budget (or a fixed effort) on shorter plans, never a longer one.

Stages run in order, each starting from the best plan so far, and the answer says which stage
produced it:

1. ``greedy``/``portfolio``: the plans the caller already has (the policy's greedy pass and the
   legacy rule's baseline), the baseline rules (SPT, MOR, MWKR: a compiled pass each, run
   whatever the search's time, as long as they fit before the answer is due) and the other
   rules while the search's time fits; the shortest is kept, so the answer is never longer than
   the legacy rule's, nor than a baseline rule's that had the time to run.
2. ``sampling``: a few stochastic rollouts of the policy (a small share of the budget).
3. ``tabu``: tabu search on the disjunctive graph (`search.tabu`), most of the budget.
4. ``cpsat``: OR-Tools CP-SAT warm-started from the best plan, only where measurements showed
   it pays (small instances and budgets of several seconds) and only when OR-Tools is installed.

A budget is a deadline on ``time.perf_counter`` or an iteration count; with the count, every
stage does a fixed amount of work (no CP-SAT, whose effort depends on the clock), so a
benchmark run is reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import (
    BASELINE_RULES,
    RULES,
    dispatch_arrays,
    makespan_of,
)
from jobshop_scheduler.rl.fast_policy import FastScorer
from jobshop_scheduler.search import cpsat
from jobshop_scheduler.search.bounds import lower_bound
from jobshop_scheduler.search.sampling import sampled_schedule
from jobshop_scheduler.search.tabu import SETUP_SECONDS_PER_OP, TabuSearch

IntArray = NDArray[np.int64]
Plan = tuple[IntArray, IntArray]  # machine and start per operation

STAGES = ("greedy", "portfolio", "sampling", "tabu", "cpsat")
PORTFOLIO_SHARE = 0.1  # of the budget, at most, for the rules the caller did not pass in
SAMPLING_SHARE = 0.1  # of the budget, at most, for policy rollouts
FIXED_SAMPLES = 4  # rollouts in fixed-iterations mode
# CP-SAT after the tabu search (docs/benchmark.md): on 15x15 it cost makespan (the tabu search
# lost half its time) and never improved it; on 10x10 and small flexible shops it proves the
# tabu plan optimal, so the answer's lower bound becomes exact.
CPSAT_MAX_OPS = 150
CPSAT_MIN_SECONDS = 2.0
CPSAT_SHARE = 0.5  # of the budget left after sampling, when CP-SAT runs


@dataclass(frozen=True, slots=True)
class SearchResult:
    op_machine: IntArray
    op_start: IntArray
    makespan: int
    stage: str  # one of STAGES: where the answer came from
    lower_bound: int
    greedy_makespan: int
    iterations: int  # tabu iterations


class _Best:
    """The best plan so far and the stage that found it."""

    def __init__(self, cp: CompiledProblem, plan: Plan, stage: str) -> None:
        self.cp = cp
        self.plan = (np.asarray(plan[0], dtype=np.int64), np.asarray(plan[1], dtype=np.int64))
        self.makespan = makespan_of(cp, *self.plan)
        self.stage = stage

    def offer(self, plan: Plan, stage: str, makespan: int | None = None) -> None:
        value = makespan_of(self.cp, *plan) if makespan is None else makespan
        if value < self.makespan:
            self.plan = (np.asarray(plan[0], dtype=np.int64), np.asarray(plan[1], dtype=np.int64))
            self.makespan, self.stage = value, stage


def improve(
    cp: CompiledProblem,
    greedy: Plan,
    *,
    deadline: float | None = None,
    iterations: int | None = None,
    baselines: dict[str, Plan] | None = None,
    scorer: FastScorer | None = None,
    seed: int = 0,
    greedy_seconds: float | None = None,
    horizon: int = 0,
    rules_due: float | None = None,
    rule_seconds: float = 0.0,
) -> SearchResult:
    """The best plan the stages find from `greedy` before `deadline` or within `iterations`.

    `baselines` are rule plans the caller already computed (by rule name), reused for free;
    `greedy_seconds`, what the greedy pass took, prices a policy rollout before one is started;
    `horizon`, the jobs open at once in that pass (0: all), is the rollouts' too. The baseline
    rules run whatever the time unless `rules_due` (time.perf_counter) says when the answer is
    due: then only those whose cost, `rule_seconds` for the first, fits before it.
    """
    if deadline is None and iterations is None:
        raise ValueError("give the search a deadline or an iteration count")
    clock = _Clock(deadline)
    bound = lower_bound(cp)
    best = _Best(cp, greedy, "greedy")
    greedy_makespan = best.makespan
    until = clock.share(PORTFOLIO_SHARE, iterations)
    _portfolio(cp, best, bound, baselines or {}, until, rules_due, rule_seconds)
    if scorer is not None:
        until = clock.share(SAMPLING_SHARE, iterations)
        _sample(cp, best, scorer, bound, until, iterations, greedy_seconds, seed, horizon)
    tabu_iterations = 0
    if best.makespan > bound and clock.left() > SETUP_SECONDS_PER_OP * cp.n_ops:
        use_cpsat = iterations is None and _cpsat_pays(cp, clock.total)
        stop = deadline
        if use_cpsat and deadline is not None:
            stop = deadline - CPSAT_SHARE * clock.left()
        search = TabuSearch(cp, *best.plan, seed=seed)
        found = search.run(iterations=iterations, deadline=stop, lower_bound=bound)
        tabu_iterations = found.iterations
        best.offer((found.op_machine, found.op_start), "tabu", found.makespan)
        if use_cpsat and best.makespan > bound and clock.left() > 0:
            bound = _polish(cp, best, bound, clock.left(), seed)
    return SearchResult(
        best.plan[0], best.plan[1], best.makespan, best.stage, bound, greedy_makespan,
        tabu_iterations,
    )  # fmt: skip


class _Clock:
    """The budget's deadline and the shares of it the cheap stages may take."""

    def __init__(self, deadline: float | None) -> None:
        self.began = time.perf_counter()
        self.deadline = deadline
        self.total = 0.0 if deadline is None else max(deadline - self.began, 0.0)

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.perf_counter()

    def share(self, fraction: float, iterations: int | None) -> float:
        """Until when (perf_counter) a stage starting now may run: +inf with a fixed effort."""
        if iterations is not None or self.deadline is None:
            return float("inf")
        return min(time.perf_counter() + fraction * self.total, self.deadline)


def _portfolio(  # noqa: PLR0917 - one caller
    cp: CompiledProblem,
    best: _Best,
    bound: int,
    known: dict[str, Plan],
    until: float,
    due: float | None,
    cost: float,
) -> None:
    """Every rule the caller has for free, the baseline rules, then the others while the
    previous one's time (`cost` before the first) fits before `until`. The baseline rules run
    even when the search's deadline has passed (budget 0, where the planner calls the search
    with a spent deadline for them, or a greedy pass that used the budget up), as long as
    they fit before `due`, when the answer is due (None: whatever the time)."""
    for plan in known.values():
        best.offer((np.asarray(plan[0]), np.asarray(plan[1])), "portfolio")
    for rule in (*BASELINE_RULES, *(r for r in RULES if r not in BASELINE_RULES)):
        if rule in known or best.makespan <= bound:
            continue
        started = time.perf_counter()
        limit = (float("inf") if due is None else due) if rule in BASELINE_RULES else until
        if started + cost > limit:
            break
        machines, starts = dispatch_arrays(cp, rule)
        cost = time.perf_counter() - started
        best.offer((np.asarray(machines), np.asarray(starts)), "portfolio")


_warm = False


def warm_up() -> None:
    """Load (or compile) the search's kernels now, so the first request does not pay for it."""
    global _warm  # noqa: PLW0603 - once per process
    if _warm:
        return
    from jobshop_scheduler.instances.flexible import production_like  # noqa: PLC0415

    for problem in (production_like(4, seed=0), taillard_like()):
        cp = compile_problem(problem)
        plan = dispatch_arrays(cp, "fifo")
        improve(cp, (np.asarray(plan[0]), np.asarray(plan[1])), iterations=50)
    _warm = True


def taillard_like() -> Problem:
    """A tiny classic shop (one machine per operation), to compile the classic code path."""
    from jobshop_scheduler.instances.taillard import taillard  # noqa: PLC0415

    return taillard(4, 3, 1, 2, "warm-up")


def _sample(  # noqa: PLR0917 - one private caller
    cp: CompiledProblem,
    best: _Best,
    scorer: FastScorer,
    bound: int,
    until: float,
    iterations: int | None,
    cost: float | None,
    seed: int,
    horizon: int,
) -> None:
    """Policy rollouts while the next one fits before `until`."""
    if cp.n_ops == 0:
        return
    rng = np.random.default_rng(seed)
    count = 0
    while best.makespan > bound and (iterations is None or count < FIXED_SAMPLES):
        started = time.perf_counter()
        if started + (cost or 0.0) > until:
            break
        best.offer(sampled_schedule(cp, scorer, rng, horizon=horizon), "sampling")
        cost = time.perf_counter() - started
        count += 1


def _cpsat_pays(cp: CompiledProblem, total: float) -> bool:
    return cpsat.available() and cp.n_ops <= CPSAT_MAX_OPS and total >= CPSAT_MIN_SECONDS


def _polish(cp: CompiledProblem, best: _Best, bound: int, seconds: float, seed: int) -> int:
    """CP-SAT from the best plan; returns the lower bound, raised if the solver proved more."""
    result = cpsat.solve(cp, seconds, hint=best.plan, workers=1, seed=seed)
    if result is None:
        return bound
    best.offer((result.op_machine, result.op_start), "cpsat", result.makespan)
    return max(bound, result.bound)
