"""Non-delay priority dispatching: the legacy scheduler, the PPO fallback and the baseline.

Exact definition (it reproduces the published-style reference makespans on Taillard ta01, ta05 and
ta10 for SPT, MOR and MWKR; see tests/unit/scheduler/test_dispatch.py):

1. The ready operation of a job is its first unscheduled one. It can start at
   ``est = max(job_ready, min(machine_free[k] for its eligible machines k))``, where job_ready is
   the job's release time, then the end of its previous operation.
2. ``t* = min(est)`` over all ready operations. The candidates are ALL ready operations with
   ``est == t*``, whatever their machine (not a Giffler-Thompson conflict set on one machine:
   that variant gives different, worse numbers).
3. The rule picks one candidate by the smallest key, ties going to the lowest job index:

   - ``spt``:  duration of the operation (on the machine chosen in step 4);
   - ``mor``:  minus the number of operations left in the job, counting this one (MOPNR);
   - ``mwkr``: minus the work left in the job, COUNTING this operation (excluding it does not
     reproduce the reference values), with min durations for flexible operations;
   - ``fifo``: job_ready, i.e. the time the operation joined the queue;
   - ``edd``:  the job's due date (jobs without one go last).

4. The operation goes on an eligible machine where it starts at t*; among several (flexible
   operations) the shortest duration wins, then the lowest machine index. Repeat until done.

Speed: instead of rescanning every job per step, a heap holds ``(est, key, job)`` per ready
operation. Machine free times and job ready times only grow, so a stored entry is a lower bound of
its true value; a popped entry is recomputed and pushed back if it was stale, and the first
entry that is still exact is precisely the rule's choice among the operations startable at t*.
That is O(log n) per step plus one re-push per outdated entry.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from enum import Enum

import numpy as np

from jobshop_scheduler.domain.model import Problem, Schedule
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem

RULES: tuple[str, ...] = ("spt", "mor", "mwkr", "fifo", "edd")
# The legacy system's rule, the baseline every answer is compared with and the fallback: the
# strongest single rule on every benchmark set (see docs/benchmark.md).
LEGACY_RULE = "mwkr"
_ALIASES = {"mopnr": "mor"}

Alternatives = tuple[tuple[int, int], ...]
Entry = tuple[int, float, int]  # (earliest start, rule key, job index)


class _Key(Enum):
    """Where a rule's key comes from: fixed per operation, or known only when it is placed."""

    STATIC = "static"
    DURATION = "duration"
    READY = "ready"


def _resolve(rule: str) -> str:
    name = rule.lower()
    name = _ALIASES.get(name, name)
    if name not in RULES:
        raise ValueError(f"unknown dispatching rule {rule!r}; valid rules: {', '.join(RULES)}")
    return name


def _static_keys(cp: CompiledProblem, rule: str) -> list[float]:
    """Per-operation key for the rules whose priority does not depend on the moment."""
    if rule == "mor":
        left = cp.job_op_start[1:][cp.op_job] - np.arange(cp.n_ops)  # this one and later ones
        keys: list[float] = (-left).tolist()
        return keys
    if rule == "mwkr":
        keys = (-cp.work_from).tolist()
        return keys
    if rule == "edd":
        keys = cp.due_date[cp.op_job].tolist()
        return keys
    return []


def _earliest(alternatives: Alternatives, ready: int, free: list[int]) -> tuple[int, int, int]:
    """(start, duration, machine) for the earliest start, shortest then lowest machine on ties.

    Plain loops rather than min() over generators: this runs several times per operation.
    Alternatives are sorted by machine index, so the strict < keeps the lowest index on ties.
    """
    start = max(ready, min([free[machine] for machine, _ in alternatives]))
    best_duration, best_machine = -1, -1
    for machine, duration in alternatives:
        if free[machine] <= start and (best_machine < 0 or duration < best_duration):
            best_duration, best_machine = duration, machine
    return start, best_duration, best_machine


class _Dispatcher:
    """State of one dispatching pass; the loop lives in run()."""

    def __init__(self, cp: CompiledProblem, rule: str) -> None:
        self.alternatives = cp.alternatives
        offsets: list[int] = cp.job_op_start.tolist()
        self.next_op = offsets[:-1]
        self.end_op = offsets[1:]
        self.ready: list[int] = cp.release_time.tolist()
        self.free: list[int] = cp.machine_ready.tolist()
        self.op_machine = [0] * cp.n_ops
        self.op_start = [0] * cp.n_ops
        self.static = _static_keys(cp, rule)
        self.source = {"spt": _Key.DURATION, "fifo": _Key.READY}.get(rule, _Key.STATIC)

    def entry(self, job: int) -> Entry:
        """The exact heap entry of a job's ready operation, given the current state."""
        op = self.next_op[job]
        start, duration, _ = _earliest(self.alternatives[op], self.ready[job], self.free)
        return start, self.key(op, duration, job), job

    def key(self, op: int, duration: int, job: int) -> float:
        if self.source is _Key.STATIC:
            return self.static[op]
        if self.source is _Key.DURATION:
            return duration
        return self.ready[job]

    def initial_heap(self) -> list[Entry]:
        """One exact entry per job that has operations."""
        heap = [self.entry(j) for j in range(len(self.next_op)) if self.next_op[j] < self.end_op[j]]
        heapq.heapify(heap)
        return heap

    def run(self) -> tuple[list[int], list[int]]:
        """Place every operation; return per-operation machine indices and start times."""
        heap = self.initial_heap()
        alternatives, ready, free, next_op = self.alternatives, self.ready, self.free, self.next_op
        static = self.static if self.source is _Key.STATIC else None
        while heap:
            est, key, job = heap[0]
            op = next_op[job]
            alts = alternatives[op]
            if len(alts) == 1:  # classic job shop: inline fast path
                machine, duration = alts[0]
                start = max(ready[job], free[machine])
            else:
                start, duration, machine = _earliest(alts, ready[job], free)
            true_key = static[op] if static is not None else self.key(op, duration, job)
            if start != est or true_key != key:  # outdated lower bound: requeue, look again
                heapq.heapreplace(heap, (start, true_key, job))
                continue
            self.op_machine[op] = machine
            self.op_start[op] = start
            free[machine] = ready[job] = start + duration
            next_op[job] = op + 1
            if op + 1 < self.end_op[job]:
                heapq.heapreplace(heap, self.entry(job))
            else:
                heapq.heappop(heap)
        return self.op_machine, self.op_start


def dispatch_arrays(cp: CompiledProblem, rule: str) -> tuple[list[int], list[int]]:
    """The dispatching pass on the array form: (machine index, start) per global operation.

    For callers that stay in index space (RL environment, policy fallback, benchmarks).
    """
    return _Dispatcher(cp, _resolve(rule)).run()


def dispatch(problem: Problem | CompiledProblem, rule: str) -> Schedule:
    """Schedule every operation with a non-delay dispatching rule from RULES."""
    cp = problem if isinstance(problem, CompiledProblem) else compile_problem(problem)
    op_machine, op_start = dispatch_arrays(cp, rule)
    return cp.to_schedule(op_machine, op_start)


def makespan_of(
    cp: CompiledProblem,
    op_machine: Sequence[int] | np.ndarray,
    op_start: Sequence[int] | np.ndarray,
) -> int:
    """Makespan of an array-form schedule without building Assignments."""
    if cp.n_ops == 0:
        return 0
    durations = cp.duration_matrix[np.arange(cp.n_ops), np.asarray(op_machine, dtype=np.int64)]
    return int((np.asarray(op_start, dtype=np.int64) + durations).max())


BASELINE_RULES = ("spt", "mor", "mwkr")  # the rules a learned policy must beat


def best_rule_makespan(cp: CompiledProblem, rules: Sequence[str] = BASELINE_RULES) -> int:
    """The shortest makespan among `rules`: the bar training validates against."""
    return min(makespan_of(cp, *dispatch_arrays(cp, rule)) for rule in rules)
