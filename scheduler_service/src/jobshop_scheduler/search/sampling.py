"""Stochastic rollouts of the policy: the greedy pass with each choice drawn from the softmax.

The greedy pass always takes the best-scored candidate; drawing instead from the softmax of the
scores (at a temperature) gives different plans near the policy's judgement, and the best of a
few is often shorter than the greedy one. One rollout costs what a greedy pass costs, so the
anytime search spends only a small share of its budget here and the rest on the tabu search.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.rl.fast_policy import PASS_LOCK, FastScorer, rollout

TEMPERATURE = 0.5


def sampled_schedule(
    cp: CompiledProblem,
    scorer: FastScorer,
    rng: np.random.Generator,
    temperature: float = TEMPERATURE,
    horizon: int = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(machine, start) per operation of one rollout with choices drawn at `temperature`, at
    most `horizon` jobs open at once (0: all), as in the greedy pass it varies."""
    with PASS_LOCK:
        state, _ = rollout(cp, scorer, rng, temperature, horizon)
    return state.op_machine, state.op_start
