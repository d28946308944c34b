"""Training's yardstick: fixed shops with the best legacy rule's makespan on each, and the mean
ratio of the greedy pass to it (below 1 beats the rules). PPO's monitor and self-labelling both
keep the weights that do best on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import best_rule_makespan
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule


@dataclass(frozen=True)
class ValidationCase:
    name: str
    problem: CompiledProblem
    best_rule: int  # makespan of the best legacy rule on it

    @classmethod
    def of(cls, name: str, problem: Problem) -> ValidationCase:
        cp = compile_problem(problem)
        return cls(name, cp, best_rule_makespan(cp))


def evaluate(scorer: FastScorer, cases: Sequence[ValidationCase]) -> float:
    """Mean makespan ratio greedy PPO / best legacy rule (below 1 beats the rules); NaN if none."""
    if not cases:
        return float("nan")
    ratios = [greedy_schedule(c.problem, scorer).makespan / c.best_rule for c in cases]
    return float(np.mean(ratios))
