"""Tabu search from a starting plan, for a number of iterations or until a deadline.

The compiled loop (`search.tabu_kernel`) knows nothing of time: this wrapper runs it in chunks
sized to a few milliseconds each and stops before the next chunk would overrun the deadline.
With an iteration count instead, the run is reproducible: same problem, plan and seed, same
answer, whatever the machine's speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.search import tabu_kernel as kernel
from jobshop_scheduler.search.graph import CYCLE, heads_and_tails, sequences_from_starts

IntArray = NDArray[np.int64]
CHUNK_SECONDS = 0.004  # between clock checks: small against a 100 ms budget
# One measured iteration sizes the next chunk: a first chunk of 16 took 5-13 ms on plans of
# 10 000-20 000 operations, all of it past the deadline when little time was left.
FIRST_CHUNK = 1
# Building the search's arrays and reading its result back: about 0.3 us an operation measured
# (2.7 ms on 10 000); a search with less time than twice that left would only overrun.
SETUP_SECONDS_PER_OP = 6e-7
PERTURB_MOVES = 6


@dataclass(frozen=True, slots=True)
class TabuResult:
    op_machine: IntArray
    op_start: IntArray
    makespan: int
    iterations: int


def job_links(cp: CompiledProblem) -> tuple[IntArray, IntArray, IntArray]:
    """(job predecessor, job successor, release) per operation; -1 where there is none."""
    ops = np.arange(cp.n_ops, dtype=np.int64)
    first = cp.op_position == 0
    last = np.zeros(cp.n_ops, dtype=bool)
    ends = cp.job_op_start[1:][cp.job_n_ops > 0] - 1
    last[ends] = True
    pred = np.where(first, -1, ops - 1)
    succ = np.where(last, -1, ops + 1)
    release = np.where(first, cp.release_time[cp.op_job], 0).astype(np.int64)
    return pred, succ, release


def alternative_machines(cp: CompiledProblem) -> IntArray:
    """(operations, most alternatives) table of eligible machine indices, -1 padded."""
    counts = np.diff(cp.alt_ptr)
    width = int(counts.max()) if len(counts) else 1
    table = np.full((cp.n_ops, width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(cp.n_ops), counts)
    table[rows, np.arange(len(cp.alt_machine)) - cp.alt_ptr[rows]] = cp.alt_machine
    return table


def tenure(cp: CompiledProblem) -> tuple[int, int]:
    """(shortest tenure, random extra): longer lists for many jobs per machine."""
    base = 8 + cp.n_jobs // max(cp.n_machines, 1)
    return base, max(base // 2, 2)


class TabuSearch:
    """One search over one problem; `run` may be called repeatedly and continues where it was."""

    def __init__(
        self,
        cp: CompiledProblem,
        op_machine: IntArray,
        op_start: IntArray,
        seed: int = 0,
        max_stall: int | None = None,
    ) -> None:
        self.cp = cp
        n, m = cp.n_ops, cp.n_machines
        self.job_pred, self.job_succ, self.release = job_links(cp)
        self.alt_machine = alternative_machines(cp)
        self.machine = np.asarray(op_machine, dtype=np.int64).copy()
        self.duration = cp.duration_matrix[np.arange(n), self.machine].astype(np.int64)
        starts = np.asarray(op_start, dtype=np.int64)
        self.seq, self.count, self.position = sequences_from_starts(self.machine, starts, m)
        self.work = np.zeros((6, max(n, 1)), dtype=np.int64)
        path_moves = max(n, 1) * (1 + self.alt_machine.shape[1])
        self.moves = np.zeros((3, path_moves), dtype=np.int64)
        self.tabu = np.zeros((3, kernel.TABU_CAPACITY), dtype=np.int64)
        self.tabu[:2] = -(2**40)
        self.stats = np.zeros(kernel.N_STATS, dtype=np.int64)
        shortest, extra = tenure(cp)
        stall = max_stall if max_stall is not None else max(1000, 8 * n)
        self.params = np.array([shortest, extra, stall, PERTURB_MOVES], dtype=np.int64)
        self.rng = np.array([(seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64 or 1],
                            dtype=np.uint64)  # fmt: skip
        makespan = self._refresh()
        if makespan == CYCLE:
            raise ValueError("the starting plan's machine orders contradict its job orders")
        self.stats[kernel.CURRENT] = self.stats[kernel.BEST] = makespan
        self.best = (self.machine.copy(), self.seq.copy(), self.count.copy(), self.position.copy())

    def _refresh(self) -> int:
        return int(
            kernel._refresh(
                self.job_pred, self.job_succ, self.release, self.cp.machine_ready, self.machine,
                self.duration, self.seq, self.count, self.position, self.work,
            )
        )  # fmt: skip

    @property
    def best_makespan(self) -> int:
        return int(self.stats[kernel.BEST])

    @property
    def iterations(self) -> int:
        return int(self.stats[kernel.ITERATION])

    def step(self, iterations: int, lower_bound: int = 0) -> None:
        """Run up to `iterations` more iterations."""
        kernel.tabu_run(
            iterations, lower_bound, self.job_pred, self.job_succ, self.release,
            self.cp.machine_ready, self.cp.duration_matrix, self.alt_machine, self.machine,
            self.duration, self.seq, self.count, self.position, *self.best, self.work,
            self.moves, self.tabu, self.stats, self.params, self.rng,
        )  # fmt: skip

    def run(
        self, iterations: int | None = None, deadline: float | None = None, lower_bound: int = 0
    ) -> TabuResult:
        """Search until `iterations` more are done or `deadline` (perf_counter) would pass."""
        if iterations is None and deadline is None:
            raise ValueError("give the search an iteration count or a deadline")
        target = None if iterations is None else self.iterations + iterations
        chunk = FIRST_CHUNK
        while self.best_makespan > lower_bound:
            left = None if target is None else target - self.iterations
            if left is not None and left <= 0:
                break
            size = chunk if left is None else min(chunk, left)
            began = time.perf_counter()
            if deadline is not None and began >= deadline:
                break
            before = self.iterations
            self.step(size, lower_bound)
            if self.iterations == before:
                break  # reached the lower bound
            spent = time.perf_counter() - began
            per_iteration = spent / (self.iterations - before)
            if deadline is not None:
                room = deadline - time.perf_counter()
                chunk = int(min(CHUNK_SECONDS, room) / max(per_iteration, 1e-9))
                if chunk < 1:
                    break
            else:
                chunk = max(1, int(CHUNK_SECONDS / max(per_iteration, 1e-9)))
        return self.result()

    def result(self) -> TabuResult:
        """The best plan so far, as a machine and a start time per operation."""
        machine, seq, count, position = self.best
        duration = self.cp.duration_matrix[np.arange(self.cp.n_ops), machine].astype(np.int64)
        head = np.zeros(max(self.cp.n_ops, 1), dtype=np.int64)
        scratch = np.zeros((3, max(self.cp.n_ops, 1)), dtype=np.int64)
        makespan = heads_and_tails(
            self.job_pred, self.job_succ, self.release, self.cp.machine_ready, machine, duration,
            seq, count, position, head, scratch[0], scratch[1], scratch[2],
        )  # fmt: skip
        return TabuResult(
            machine.copy(), head[: self.cp.n_ops].copy(), int(makespan), self.iterations
        )  # fmt: skip
