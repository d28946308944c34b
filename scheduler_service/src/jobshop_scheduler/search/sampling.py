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
from jobshop_scheduler.rl.fast_policy import PASS_LOCK, Buffers, FastScorer
from jobshop_scheduler.rl.features import FeatureScales
from jobshop_scheduler.rl.state import ShopState

TEMPERATURE = 0.5


def sampled_schedule(
    cp: CompiledProblem,
    scorer: FastScorer,
    rng: np.random.Generator,
    temperature: float = TEMPERATURE,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(machine, start) per operation of one rollout with choices drawn at `temperature`."""
    with PASS_LOCK:
        return _rollout(cp, scorer, rng, temperature)


def _rollout(
    cp: CompiledProblem, scorer: FastScorer, rng: np.random.Generator, temperature: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    state = ShopState(cp)
    scales = FeatureScales(state)
    buffers = Buffers.for_jobs(cp.n_jobs)
    while not state.done:
        candidates = np.flatnonzero(state.candidates)
        if len(candidates) == 1:
            state.dispatch(int(candidates[0]))
            continue
        scores = scorer.candidate_scores(state, scales, buffers).astype(np.float64) / temperature
        weights = np.exp(scores - scores.max())
        pick = rng.choice(len(candidates), p=weights / weights.sum())
        state.dispatch(int(candidates[pick]))
    return state.op_machine, state.op_start
