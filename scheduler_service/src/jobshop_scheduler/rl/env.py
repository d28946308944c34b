"""Gymnasium environment: each step dispatches one candidate job's next operation.

Observation: a (max_jobs, N_FEATURES) table, one row per job (rows past the instance are zero);
action: a job index, masked to the non-delay candidates (`action_masks()`, as MaskablePPO
expects; an unmasked agent's invalid choice is replaced by the first candidate and reported in
`info["invalid_action"]`). Reward: minus the increase of the makespan lower bound (the larger of
`ShopState.lower_bound` and `ShopState.work_bound`), scaled by the mean job work, so an
episode's return is -(makespan - initial bound) / scale: maximising return minimises the
makespan, with a signal at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.rl.features import FEATURE_BOUND, N_FEATURES, FeatureScales, job_features
from jobshop_scheduler.rl.state import DispatchScheme, ShopState

ENV_ID = "JobShopDispatch-v0"
MAX_JOBS = 170  # the jobs a model's table holds; the service's batch_size opens no more at once

InstanceSampler = Callable[[np.random.Generator], Problem | CompiledProblem]


class JobShopEnv(gym.Env[NDArray[np.float32], np.int64]):
    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(
        self,
        sampler: InstanceSampler | None = None,
        problem: Problem | CompiledProblem | None = None,
        max_jobs: int = MAX_JOBS,
        *,
        scheme: DispatchScheme | None = None,
    ) -> None:
        if (sampler is None) == (problem is None):
            raise ValueError("give exactly one of sampler= or problem=")
        self._sampler = sampler
        self._fixed = _compiled(problem) if problem is not None else None
        self.max_jobs = max_jobs
        self.scheme = scheme or DispatchScheme()
        self.observation_space = gym.spaces.Box(
            low=-FEATURE_BOUND, high=FEATURE_BOUND, shape=(max_jobs, N_FEATURES), dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(max_jobs)
        self.state: ShopState | None = None
        self._scales: FeatureScales | None = None
        self._bound = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        cp = self._fixed or _compiled(self._sampler(self.np_random))  # type: ignore[misc]
        if cp.n_jobs > self.max_jobs:
            raise ValueError(f"instance has {cp.n_jobs} jobs; this env holds {self.max_jobs}")
        self.state = ShopState(cp, self.scheme.window_for(cp))
        self._scales = FeatureScales(self.state)
        self._bound = _bound(self.state)
        return self._observe(), {"lower_bound": self._bound}

    def _observe(self) -> NDArray[np.float32]:
        assert self.state is not None and self._scales is not None
        return job_features(self.state, self._scales, self.max_jobs)

    def action_masks(self) -> NDArray[np.bool_]:
        assert self.state is not None
        mask = np.zeros(self.max_jobs, dtype=np.bool_)
        mask[: self.state.cp.n_jobs] = self.state.candidates
        return mask

    def step(
        self, action: np.int64 | int
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        assert self.state is not None and self._scales is not None
        info: dict[str, Any] = {}
        job = int(action)
        if not (0 <= job < self.state.cp.n_jobs and self.state.candidates[job]):
            # Masked agents never do this; for any other agent the env stays total: the first
            # candidate is dispatched instead and the substitution is reported.
            info["invalid_action"] = job
            job = int(np.flatnonzero(self.state.candidates)[0])
        self.state.dispatch(job)
        bound = _bound(self.state)
        reward = -(bound - self._bound) / self._scales.work
        self._bound = bound
        if self.state.done:
            info["makespan"] = self.state.makespan
        return self._observe(), float(reward), self.state.done, False, info


def _bound(state: ShopState) -> float:
    """The makespan lower bound the reward tracks; equal to the makespan once done."""
    return max(float(state.lower_bound()), state.work_bound())


def _compiled(problem: Problem | CompiledProblem) -> CompiledProblem:
    return problem if isinstance(problem, CompiledProblem) else compile_problem(problem)


def register() -> None:
    """Make `gymnasium.make(ENV_ID, sampler=...)` work; idempotent."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="jobshop_scheduler.rl.env:JobShopEnv")
