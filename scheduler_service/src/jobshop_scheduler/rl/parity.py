"""Does the NumPy fast path score and pick as stable-baselines3 does? Recorded with SB3 itself.

The server answers with `fast_policy.FastScorer`, a re-implementation of the SB3 policy's
forward pass. If the two ever disagree (a layer renamed in `policy.JobScorer`, a changed feature
column, a weight transposed), the server would serve a policy nobody trained. So: walk a few
generated instances along SB3's own deterministic choices and record, at every state, the table
the fast path would score (its own compact features, so the feature code is covered too), SB3's
actor score for each candidate and SB3's chosen job (`record_reference`). The ship step stores
that record beside the model (`rl.weights`) and every server start replays it without torch;
the tests and `verify-model` compare a fresh walk with the fast path (`check_parity`).
Needs the train extra (torch, SB3, gymnasium).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.families import family_shop
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.instances.taillard import taillard
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import Buffers, FastScorer
from jobshop_scheduler.rl.features import FeatureScales, fill_features
from jobshop_scheduler.rl.weights import RecordedState, ReferenceOutputs, disagreements

DEFAULT_SEEDS = (11, 12, 13)
DEFAULT_JOBS = 20
DEFAULT_MAX_STATES = 300


@dataclass(frozen=True)
class ParityReport:
    states: int
    mismatches: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.states > 0 and not self.mismatches

    def __str__(self) -> str:
        head = f"{len(self.mismatches)} mismatch(es) in {self.states} states"
        return head + "".join(f"; {m}" for m in self.mismatches[:3])


def model_rows(sb3_model: Any) -> int:
    """The observation table height the SB3 model was built for."""
    return int(sb3_model.observation_space.shape[0])


def model_env(sb3_model: Any, problem: Problem) -> JobShopEnv:
    """An environment on ``problem`` that observes and dispatches as the model was trained to."""
    scorer = sb3_model.policy.mlp_extractor
    return JobShopEnv(
        problem=problem,
        max_jobs=model_rows(sb3_model),
        scheme=scorer.scheme,
    )


def parity_instances(
    rows: int,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    window: float = 0.0,
    long_ratio: float = 0.0,
    alike: float = 0.0,
    flexible: float = 0.0,
) -> list[Problem]:
    """Production-like instances small enough for a model's observation table; for a model
    with a dispatching window, also square classic shops, which it dispatches with it; for one
    with a long-shop scorer (`long_ratio`: its window's jobs per machine), also classic shops
    with twice as many jobs per machine, which that scorer dispatches, and for one that widens
    the window to long shops with alike routes (`alike`), long two-set shops too. For one that
    gives small flexible shops the window (`flexible`), which then go to the window scorer,
    also production-like shops as large as the table holds, so that the first scorer's
    non-delay choices are walked too."""
    jobs = max(2, min(rows, DEFAULT_JOBS))
    problems = [production_like(jobs, seed=seed) for seed in seeds]
    if flexible > 0 and rows > jobs:
        problems += [production_like(rows, seed=seed) for seed in seeds]
    shapes = []
    if window > 0:
        shapes.append((min(jobs, 15), min(jobs, 15)))
    if long_ratio > 0:
        shapes.append((jobs, max(1, int(jobs / (2 * long_ratio)))))
    for n_jobs, machines in shapes:
        problems += [
            taillard(n_jobs, machines, seed, seed + 1, f"parity{n_jobs}x{machines}-{seed}")
            for seed in seeds
        ]
    if alike > 0 and long_ratio > 0:
        machines = max(2, int(jobs / (2 * long_ratio)))
        problems += [
            family_shop("two_set", jobs, machines, np.random.default_rng(seed)) for seed in seeds
        ]
    return problems


def actor_scores(sb3_model: Any, obs: np.ndarray) -> np.ndarray:
    """SB3's actor output for every row of one observation (the logits before masking)."""
    policy = sb3_model.policy
    with th.no_grad():
        tensor, _ = policy.obs_to_tensor(obs)
        features = policy.extract_features(tensor)
        if isinstance(features, tuple):  # separate actor and critic extractors
            features = features[0]
        scores: np.ndarray = policy.mlp_extractor.forward_actor(features)[0].cpu().numpy()
    return scores


def _walk(sb3_model: Any, problem: Problem, *, budget: int, name: str) -> list[RecordedState]:
    """Follow SB3's deterministic choices on one instance, recording each state."""
    env = model_env(sb3_model, problem)
    obs, _ = env.reset(seed=0)
    assert env.state is not None
    scales = FeatureScales(env.state)  # what the env computes at reset, without reaching in
    table, rows = Buffers.for_jobs(env.state.cp.n_jobs)
    recorded: list[RecordedState] = []
    done = False
    while not done and len(recorded) < budget:
        mask = env.action_masks()
        action, _ = sb3_model.predict(obs, action_masks=mask, deterministic=True)
        jobs = np.flatnonzero(env.state.candidates)
        n = fill_features(env.state, scales, table, rows)
        recorded.append(
            RecordedState(
                table=table[:n].copy(), candidates=rows[: len(jobs)].copy(),
                scores=actor_scores(sb3_model, obs)[jobs].astype(np.float32),
                choice=int(np.flatnonzero(jobs == int(action))[0]), instance=name,
                step=len(recorded),
            )
        )  # fmt: skip
        obs, _, done, _, _ = env.step(int(action))
    return recorded


def record_reference(
    sb3_model: Any, problems: Sequence[Problem] | None = None, max_states: int = DEFAULT_MAX_STATES
) -> ReferenceOutputs:
    """SB3's outputs on up to ``max_states`` states, shared evenly over ``problems``.

    ``problems`` default to `parity_instances` sized for the model; each must have no more jobs
    than the model's observation rows.
    """
    if problems is None:
        scorer = sb3_model.policy.mlp_extractor
        long_ratio = float(scorer.window_ratio) if scorer.long_embed is not None else 0.0
        problems = parity_instances(
            model_rows(sb3_model),
            window=float(scorer.window),
            long_ratio=long_ratio,
            alike=float(scorer.window_alike),
            flexible=float(scorer.window_flexible),
        )
    problems = list(problems)
    if max_states < 1 or not problems:
        raise ValueError("parity needs at least one problem and one state")
    states: list[RecordedState] = []
    for i, problem in enumerate(problems):
        budget = (max_states - len(states)) // (len(problems) - i)
        name = problem.request_id or f"instance {i}"
        states += _walk(sb3_model, problem, budget=budget, name=name)
    return ReferenceOutputs(tuple(states), max_states)


def check_parity(
    sb3_model: Any,
    scorer: FastScorer,
    problems: Sequence[Problem] | None = None,
    max_states: int = DEFAULT_MAX_STATES,
) -> ParityReport:
    """Compare the fast path with a fresh SB3 walk (`record_reference`'s arguments)."""
    reference = record_reference(sb3_model, problems, max_states)
    return ParityReport(len(reference.states), tuple(disagreements(scorer, reference)))
