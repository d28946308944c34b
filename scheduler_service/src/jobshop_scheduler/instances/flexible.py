"""Seeded flexible job-shop instances shaped like the plant's production data.

Taillard's benchmarks are classic job shops (one machine per operation, all jobs ready at 0); the
plant is flexible, with staggered releases, due dates and priorities. This generator gives
training, benchmarks and load tests that shape at any size, reproducibly from a seed, before (and
alongside) real snapshots. Same arguments and seed, same ``Problem``, on any platform: only
``numpy.random.default_rng`` (PCG64) draws are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem

__all__ = ["GENERATORS", "FlexibleSpec", "parse_flexible", "production_like", "short_routes"]


@dataclass(frozen=True, slots=True)
class FlexibleSpec:
    """Shape of a generated instance; ranges are inclusive."""

    machines: tuple[int, int] = (10, 20)
    operations: tuple[int, int] = (10, 20)  # per job
    eligible: tuple[int, int] = (1, 3)  # machines per operation
    duration: tuple[int, int] = (5, 60)  # on the fastest eligible machine
    slowdown: float = 1.5  # other machines take base x U(1, slowdown)
    backlog: float = 0.2  # fraction of jobs already released at time 0
    release_span: float = 0.5  # other releases spread over this fraction of load / machines
    slack: tuple[float, float] = (1.5, 3.0)  # due = release + slack x the job's base work
    priority: tuple[int, int] = (1, 3)

    def check(self) -> None:
        """Refuse shapes that would generate invalid problems, before drawing anything."""
        for name in ("machines", "operations", "eligible", "duration", "priority"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} range must satisfy 1 <= low <= high, got {(lo, hi)}")
        if not 1.0 <= self.slack[0] <= self.slack[1]:
            raise ValueError(f"slack range must satisfy 1 <= low <= high, got {self.slack}")
        if self.slowdown < 1.0 or not 0.0 <= self.backlog <= 1.0 or self.release_span < 0:
            raise ValueError("need slowdown >= 1, 0 <= backlog <= 1 and release_span >= 0")


def _operation(
    rng: np.random.Generator, spec: FlexibleSpec, n_machines: int, op_id: str, machines: list[str]
) -> tuple[Operation, int]:
    """One operation and its base (fastest) duration."""
    k = min(int(rng.integers(spec.eligible[0], spec.eligible[1] + 1)), n_machines)
    chosen = rng.choice(n_machines, size=k, replace=False)
    base = int(rng.integers(spec.duration[0], spec.duration[1] + 1))
    factors = rng.uniform(1.0, spec.slowdown, size=k)
    factors[0] = 1.0  # the first machine drawn is the fastest: the base duration itself
    alternatives = sorted(
        (
            Alternative(machines[int(m)], max(base, round(base * float(f))))
            for m, f in zip(chosen, factors, strict=True)
        ),
        key=lambda a: a.machine_id,
    )
    return Operation(op_id, tuple(alternatives)), base


def _job_routes(
    rng: np.random.Generator, spec: FlexibleSpec, n_jobs: int, machines: list[str]
) -> list[tuple[str, tuple[Operation, ...], int]]:
    """(job id, operations, base work) per job."""
    width = max(3, len(str(n_jobs)))
    routes = []
    for j in range(n_jobs):
        job_id = f"J{j + 1:0{width}d}"
        n_ops = int(rng.integers(spec.operations[0], spec.operations[1] + 1))
        ops, work = [], 0
        for k in range(n_ops):
            op, base = _operation(rng, spec, len(machines), f"{job_id}-{k + 1:02d}", machines)
            ops.append(op)
            work += base
        routes.append((job_id, tuple(ops), work))
    return routes


def production_like(n_jobs: int = 170, seed: int = 0, spec: FlexibleSpec | None = None) -> Problem:
    """A reproducible flexible instance: releases, due dates and priorities included."""
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    spec = spec or FlexibleSpec()
    spec.check()
    rng = np.random.default_rng(seed)
    n_machines = int(rng.integers(spec.machines[0], spec.machines[1] + 1))
    machines = [f"M{m + 1:02d}" for m in range(n_machines)]
    routes = _job_routes(rng, spec, n_jobs, machines)
    load_per_machine = sum(work for _, _, work in routes) / n_machines
    span = round(spec.release_span * load_per_machine)
    backlog = rng.random(n_jobs) < spec.backlog
    releases = np.where(backlog, 0, rng.integers(0, span + 1, size=n_jobs))
    slack = rng.uniform(spec.slack[0], spec.slack[1], size=n_jobs)
    priorities = rng.integers(spec.priority[0], spec.priority[1] + 1, size=n_jobs)
    jobs = tuple(
        Job(
            id=job_id,
            operations=ops,
            release_time=int(releases[j]),
            due_date=int(releases[j]) + math.ceil(float(slack[j]) * work),
            priority=int(priorities[j]),
        )
        for j, (job_id, ops, work) in enumerate(routes)
    )
    return Problem(tuple(machines), jobs, request_id=f"production-like-n{n_jobs}-s{seed}")


def short_routes(n_jobs: int = 40, seed: int = 0) -> Problem:
    """A flexible shop whose jobs have one to four operations, of a shape drawn from ``seed``.

    Many plants route a job through one or two stages of alike machines, not through ten to
    twenty steps as `production_like` does: machines 3-12, routes of 1 up to 1-4 operations,
    1 up to every machine eligible per operation, a slowdown of 1-2 on the slower ones. There
    the makespan is mostly a question of balancing the machines, which the longest-work-first
    rule already answers well, and a policy taught on long routes only does not.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    rng = np.random.default_rng(seed)
    machines = int(rng.integers(3, 13))
    spec = FlexibleSpec(
        machines=(machines, machines),
        operations=(1, int(rng.integers(1, 5))),
        eligible=(1, int(rng.integers(1, machines + 1))),
        slowdown=float(rng.uniform(1.0, 2.0)),
        backlog=float(rng.uniform(0.2, 1.0)),
    )
    problem = production_like(n_jobs, seed=int(rng.integers(0, 2**31)), spec=spec)
    return Problem(problem.machines, problem.jobs, request_id=f"short-routes-n{n_jobs}-s{seed}")


# The flexible shops a benchmark set or a validation shape names by generator and job count:
# "prod50" is `production_like(50, seed)`, "short20" `short_routes(20, seed)`.
GENERATORS: dict[str, Callable[[int, int], Problem]] = {
    "prod": production_like,
    "short": short_routes,
}


def parse_flexible(name: str) -> tuple[Callable[[int, int], Problem], int] | None:
    """The generator and job count a name such as "prod50" gives (`GENERATORS`); None for a
    name that is not one (no count, a count from 0, another prefix)."""
    prefix = name.rstrip("0123456789")
    count = name[len(prefix) :]
    if prefix not in GENERATORS or not count or count.startswith("0"):
        return None
    return GENERATORS[prefix], int(count)
