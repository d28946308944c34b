"""Training instances: random Taillard-style job shops and production-like flexible shops.

A curriculum stage says which sizes to draw; the sampler object is shared by every env of a
vector env, so a callback can move all of them to the next stage at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.families import family_shop
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.instances.taillard import LCG_MAX


@dataclass(frozen=True)
class Stage:
    until: float  # fraction of the training budget at which the next stage starts
    jobs: tuple[int, int]
    machines: tuple[int, int]
    flexible_share: float = 0.0
    flexible_jobs: tuple[int, int] = (10, 30)


def random_taillard(
    rng: np.random.Generator, jobs: tuple[int, int], machines: tuple[int, int]
) -> Problem:
    """A classic job shop drawn with Taillard's generator from random seeds."""
    n = int(rng.integers(jobs[0], jobs[1] + 1))
    m = int(rng.integers(machines[0], machines[1] + 1))
    return family_shop("taillard", n, m, rng)


class CurriculumSampler:
    def __init__(self, stages: list[Stage]) -> None:
        if not stages:
            raise ValueError("a curriculum needs at least one stage")
        self.stages = stages
        self.stage = stages[0]

    def advance_to(self, progress: float) -> bool:
        """Select the stage for a training progress in [0, 1]; True when it changed."""
        stage = next((s for s in self.stages if progress < s.until), self.stages[-1])
        changed = stage is not self.stage
        self.stage = stage
        return changed

    def __call__(self, rng: np.random.Generator) -> Problem:
        stage = self.stage
        if rng.random() < stage.flexible_share:
            n = int(rng.integers(stage.flexible_jobs[0], stage.flexible_jobs[1] + 1))
            return production_like(n, seed=int(rng.integers(0, LCG_MAX)))
        return random_taillard(rng, stage.jobs, stage.machines)
