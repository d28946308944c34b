"""Does the NumPy fast path pick the actions stable-baselines3 would? A check, not a test.

The server answers with `fast_policy.FastScorer`, a re-implementation of the SB3 policy's
forward pass. If the two ever disagree (a layer renamed in `policy.JobScorer`, a changed feature
column, a weight transposed), the server would serve a policy nobody trained. So the same check
runs in the unit tests and at server start-up, where a failure keeps the server from becoming
ready: walk a few generated instances along SB3's own deterministic choices, and at every
sampled state compare its action with the fast path's argmax. Float32 and torch may order two
candidates with (near-)equal scores differently; such a tie, where the fast path scores SB3's
choice within `TIE_TOLERANCE` of its own, is not a disagreement about the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import FastScorer
from jobshop_scheduler.rl.features import FeatureScales

DEFAULT_SEEDS = (11, 12, 13)
DEFAULT_JOBS = 20
DEFAULT_MAX_STATES = 300
TIE_TOLERANCE = 1e-4  # logits; the two forward passes differ by ~1e-6 in float32


@dataclass(frozen=True)
class Mismatch:
    instance: str
    step: int
    sb3_action: int
    fast_action: int

    def __str__(self) -> str:
        return (
            f"{self.instance} step {self.step}: sb3 chose job {self.sb3_action}, "
            f"fast path job {self.fast_action}"
        )


@dataclass(frozen=True)
class ParityReport:
    states: int
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return self.states > 0 and not self.mismatches

    def __str__(self) -> str:
        head = f"{len(self.mismatches)} mismatch(es) in {self.states} states"
        return head + "".join(f"; {m}" for m in self.mismatches[:3])


def model_rows(sb3_model: Any) -> int:
    """The observation table height the SB3 model was built for."""
    return int(sb3_model.observation_space.shape[0])


def parity_instances(rows: int, seeds: Sequence[int] = DEFAULT_SEEDS) -> list[Problem]:
    """Production-like instances small enough for a model's observation table."""
    jobs = max(2, min(rows, DEFAULT_JOBS))
    return [production_like(jobs, seed=seed) for seed in seeds]


def _tie(scorer: FastScorer, env: JobShopEnv, scales: FeatureScales, a: int, b: int) -> bool:
    """True when the fast path scores candidate jobs `a` and `b` within `TIE_TOLERANCE`."""
    assert env.state is not None
    candidates = np.flatnonzero(env.state.candidates)
    if a not in candidates or b not in candidates:
        return False
    scores = scorer.candidate_scores(env.state, scales)
    index = {int(job): i for i, job in enumerate(candidates)}
    return bool(abs(float(scores[index[a]]) - float(scores[index[b]])) <= TIE_TOLERANCE)


def _walk(
    sb3_model: Any, scorer: FastScorer, problem: Problem, *, rows: int, budget: int, name: str
) -> tuple[int, list[Mismatch]]:
    """Follow SB3's deterministic choices on one instance; compare at each state."""
    env = JobShopEnv(problem=problem, max_jobs=rows)
    obs, _ = env.reset(seed=0)
    assert env.state is not None
    scales = FeatureScales(env.state)  # what the env computes at reset, without reaching in
    mismatches: list[Mismatch] = []
    steps, done = 0, False
    while not done and steps < budget:
        action, _ = sb3_model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        sb3_action, fast_action = int(action), scorer.choose(env.state, scales)
        if sb3_action != fast_action and not _tie(scorer, env, scales, sb3_action, fast_action):
            mismatches.append(Mismatch(name, steps, sb3_action, fast_action))
        obs, _, done, _, _ = env.step(sb3_action)
        steps += 1
    return steps, mismatches


def check_parity(
    sb3_model: Any,
    scorer: FastScorer,
    problems: Sequence[Problem] | None = None,
    max_states: int = DEFAULT_MAX_STATES,
) -> ParityReport:
    """Compare fast-path and SB3 actions on up to ``max_states`` states over ``problems``.

    ``problems`` default to `parity_instances` sized for the model; each must have no more jobs
    than the model's observation rows. The budget is shared evenly so every instance is visited.
    """
    rows = model_rows(sb3_model)
    problems = list(problems) if problems is not None else parity_instances(rows)
    if max_states < 1 or not problems:
        raise ValueError("parity needs at least one problem and one state")
    states, mismatches = 0, []
    for i, problem in enumerate(problems):
        budget = (max_states - states) // (len(problems) - i)
        name = problem.request_id or f"instance {i}"
        seen, found = _walk(sb3_model, scorer, problem, rows=rows, budget=budget, name=name)
        states += seen
        mismatches.extend(found)
    return ParityReport(states, tuple(mismatches))
