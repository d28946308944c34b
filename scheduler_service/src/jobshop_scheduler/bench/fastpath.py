"""How much faster the serving fast path is than stepping the environment with SB3's predict.

Both sides do one full greedy pass on the same instance, compilation included: the fast path is
``compile_problem`` + ``greedy_schedule(FastScorer)``, what the server runs; the slow path is
``JobShopEnv.reset`` + ``MaskablePPO.predict(obs, action_masks=...)`` + ``env.step`` until done,
what serving through stable-baselines3 would cost. The SB3 observation table has a fixed height,
so the instance has at most that many jobs (170 for the shipped model). Both paths make one
untimed pass on a small instance first, so torch's and numba's set-up costs are not counted.
SB3 runs with one torch thread, like the NumPy fast path: on a net this small, more threads
only contend (on a busy two-core machine, 48 ms per predict instead of 0.4 ms).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jobshop_scheduler.bench.load import classic_problem
from jobshop_scheduler.bench.servers import BenchError
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.model_store import MODEL_NAME, ModelError, load_model
from jobshop_scheduler.rl.parity import model_env, model_rows
from jobshop_scheduler.rl.ship import load_sb3


@dataclass(frozen=True)
class FastPathResult:
    instance: str
    jobs: int
    requested_jobs: int
    model_rows: int  # the SB3 observation height: the most jobs SB3 can schedule
    operations: int
    fast_s: float  # median of the fast passes
    sb3_s: float  # median of the SB3 passes
    fast_makespan: int
    sb3_makespan: int

    @property
    def speedup(self) -> float:
        return self.sb3_s / self.fast_s if self.fast_s > 0 else float("inf")


def fast_pass(problem: Problem, scorer: FastScorer) -> tuple[float, int]:
    started = time.perf_counter()
    state = greedy_schedule(compile_problem(problem), scorer)
    return time.perf_counter() - started, int(state.makespan)


def sb3_pass(problem: Problem, sb3_model: Any) -> tuple[float, int]:
    started = time.perf_counter()
    env = model_env(sb3_model, problem)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        action, _ = sb3_model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        obs, _, done, _, _ = env.step(int(action))
    seconds = time.perf_counter() - started
    assert env.state is not None
    return seconds, int(env.state.makespan)


def measure_fast_path(
    model_dir: Path, jobs: int, fast_repeats: int = 3, sb3_repeats: int = 1
) -> FastPathResult:
    """Median time of a greedy pass on a classic ``jobs`` x 10 on 20 instance, both ways."""
    try:
        model = load_model(model_dir)
        sb3_model = load_sb3(model_dir / MODEL_NAME)
    except ModelError as exc:
        raise BenchError(f"cannot load the model: {exc}") from exc
    rows = model_rows(sb3_model)
    problem = classic_problem(min(jobs, rows), seed=0)
    warm = classic_problem(min(3, rows), seed=1)  # torch and numba set up before timing
    fast_pass(warm, model.scorer)
    fast = [fast_pass(problem, model.scorer) for _ in range(fast_repeats)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fast path; extra threads only contend on so small a net
    try:
        sb3_pass(warm, sb3_model)
        slow = [sb3_pass(problem, sb3_model) for _ in range(sb3_repeats)]
    finally:
        torch.set_num_threads(threads)
    return FastPathResult(
        instance=problem.request_id,
        jobs=min(jobs, rows),
        requested_jobs=jobs,
        model_rows=rows,
        operations=sum(len(job.operations) for job in problem.jobs),
        fast_s=statistics.median(s for s, _ in fast),
        sb3_s=statistics.median(s for s, _ in slow),
        fast_makespan=fast[0][1],
        sb3_makespan=slow[0][1],
    )


def describe(result: FastPathResult) -> str:
    capped = (
        f", not {result.requested_jobs}: the SB3 model holds {result.model_rows} jobs"
        if result.requested_jobs > result.model_rows
        else ""
    )
    same = "same" if result.fast_makespan == result.sb3_makespan else "different"
    return (
        f"fast path vs SB3 predict ({result.instance}{capped}, {result.operations} dispatches, one "
        f"greedy pass): fast {1000 * result.fast_s:.0f} ms, SB3 {1000 * result.sb3_s:.0f} ms, "
        f"speed-up {result.speedup:.1f}x ({same} makespan: {result.fast_makespan} vs "
        f"{result.sb3_makespan})"
    )
