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

Speed: a compiled loop (`_dispatch`) keeps each job's earliest start and recomputes it only
for the jobs the last step moved: the job placed, and the jobs whose next operation may use
the machine it took and could start on it by their start. Machine free times and job ready
times only grow, so every other start is still exact. Only SPT's key depends on the machine
an operation would take; the other rules recompute a start only where that machine was the
job's first free one, and choose the machine of the job they place. A step costs a scan of
the jobs plus the moved jobs' eligible machines. It replaced a heap of stale lower bounds in
Python, which on a flexible shop requeued every job that could use the machine at every step:
0.95 s against 34 ms for MWKR on an 800-job production-like request (docs/benchmark.md,
"Large requests" and "Large requests within their budget").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from jobshop_scheduler.domain.model import Problem, Schedule
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem

RULES: tuple[str, ...] = ("spt", "mor", "mwkr", "fifo", "edd")
# The legacy system's rule, the baseline every answer is compared with and the fallback: the
# strongest single rule on every benchmark set (see docs/benchmark.md).
LEGACY_RULE = "mwkr"
_ALIASES = {"mopnr": "mor"}

_NEVER = np.iinfo(np.int64).max // 4  # later than any start


# Where a rule's key comes from (`_dispatch`): fixed per operation, the duration on the machine
# the operation would take, or the time the job joined the queue.
_STATIC, _DURATION, _READY = 0, 1, 2
_SOURCES = {"spt": _DURATION, "fifo": _READY}


def _resolve(rule: str) -> str:
    name = rule.lower()
    name = _ALIASES.get(name, name)
    if name not in RULES:
        raise ValueError(f"unknown dispatching rule {rule!r}; valid rules: {', '.join(RULES)}")
    return name


def _static_keys(cp: CompiledProblem, rule: str) -> np.ndarray:
    """Per-operation key for the rules whose priority does not depend on the moment."""
    if rule == "mor":
        left = cp.job_op_start[1:][cp.op_job] - np.arange(cp.n_ops)  # this one and later ones
        return (-left).astype(np.float64)
    if rule == "mwkr":
        return (-cp.work_from).astype(np.float64)
    if rule == "edd":
        return cp.due_date[cp.op_job].astype(np.float64)
    return np.zeros(cp.n_ops, dtype=np.float64)


@njit(cache=True)
def _soonest(  # pragma: no cover - compiled
    op: int, free: np.ndarray, alt_ptr: np.ndarray, alt_machine: np.ndarray
) -> int:
    """When the first of an operation's machines is free."""
    soonest = _NEVER
    for a in range(alt_ptr[op], alt_ptr[op + 1]):
        soonest = min(soonest, free[alt_machine[a]])
    return soonest


@njit(cache=True)
def _machine_at(  # noqa: PLR0917  # pragma: no cover - compiled
    op: int,
    start: int,
    free: np.ndarray,
    alt_ptr: np.ndarray,
    alt_machine: np.ndarray,
    alt_duration: np.ndarray,
) -> tuple[int, int]:
    """(machine, duration) of an operation started at `start`: the shortest of its machines
    free by then, the lowest index on ties (`alt_machine` is sorted per operation)."""
    best, machine = -1, -1
    for a in range(alt_ptr[op], alt_ptr[op + 1]):
        k = alt_machine[a]
        if free[k] <= start and (machine < 0 or alt_duration[a] < best):
            best, machine = alt_duration[a], k
    return machine, best


@njit(cache=True)
def _dispatch(  # noqa: PLR0917  # pragma: no cover - compiled
    job_op_start: np.ndarray,
    next_op: np.ndarray,
    ready: np.ndarray,
    free: np.ndarray,
    eligible: np.ndarray,
    alt_ptr: np.ndarray,
    alt_machine: np.ndarray,
    alt_duration: np.ndarray,
    static: np.ndarray,
    source: int,
    op_machine: np.ndarray,
    op_start: np.ndarray,
) -> None:
    """Place every operation from each job's `next_op` on by the rule (module docstring),
    writing machine and start; `next_op`, `ready` (job ready times) and `free` (machine free
    times) are the state to start from, and are updated in place. The eligible machines of
    operation o are ``alt_machine[alt_ptr[o]:alt_ptr[o + 1]]``, in index order."""
    n_jobs = job_op_start.shape[0] - 1
    end_op = job_op_start[1:]
    # per job: when its next operation's first machine is free, its start (_NEVER once the
    # job is done) and its rule's key
    soonest = np.full(n_jobs, _NEVER, dtype=np.int64)
    start = np.full(n_jobs, _NEVER, dtype=np.int64)
    key = np.zeros(n_jobs, dtype=np.float64)
    by_duration = source == _DURATION
    for j in range(n_jobs):
        _update(j, next_op, end_op, ready, free, alt_ptr, alt_machine, alt_duration, static,
                source, soonest, start, key)  # fmt: skip
    for _ in range(job_op_start[-1]):
        chosen = 0
        for j in range(1, n_jobs):  # the earliest start, the smallest key, the lowest job
            if start[j] < start[chosen] or (start[j] == start[chosen] and key[j] < key[chosen]):
                chosen = j
        if n_jobs == 0 or start[chosen] == _NEVER:
            return
        op = next_op[chosen]
        k, length = _machine_at(op, start[chosen], free, alt_ptr, alt_machine, alt_duration)
        taken = free[k]
        op_machine[op], op_start[op] = k, start[chosen]
        free[k] = ready[chosen] = start[chosen] + length
        next_op[chosen] = op + 1
        _update(chosen, next_op, end_op, ready, free, alt_ptr, alt_machine, alt_duration,
                static, source, soonest, start, key)  # fmt: skip
        # The other jobs machine k's new free time may move: those whose first free machine
        # it was (their start), and with SPT those that could start on it (their duration).
        # A job that could not use k by its start is unmoved: free times only grow.
        # (Inline: a call here, even an inlined one, made MWKR 2.5x slower.)
        for j in range(n_jobs):
            moved = taken <= start[j] != _NEVER if by_duration else soonest[j] == taken
            if moved and eligible[next_op[j], k]:
                op = next_op[j]
                soonest[j] = _soonest(op, free, alt_ptr, alt_machine)
                start[j] = max(ready[j], soonest[j])
                if by_duration:  # the other rules' keys do not depend on machines
                    key[j] = _machine_at(op, start[j], free, alt_ptr, alt_machine, alt_duration)[1]


@njit(cache=True)
def _update(  # noqa: PLR0917  # pragma: no cover - compiled
    j: int,
    next_op: np.ndarray,
    end_op: np.ndarray,
    ready: np.ndarray,
    free: np.ndarray,
    alt_ptr: np.ndarray,
    alt_machine: np.ndarray,
    alt_duration: np.ndarray,
    static: np.ndarray,
    source: int,
    soonest: np.ndarray,
    start: np.ndarray,
    key: np.ndarray,
) -> None:
    """Job j's next operation as it stands: its first free machine, start and key."""
    op = next_op[j]
    if op >= end_op[j]:
        soonest[j] = start[j] = _NEVER
        return
    soonest[j] = _soonest(op, free, alt_ptr, alt_machine)
    start[j] = max(ready[j], soonest[j])
    length = 0
    if source == _DURATION:
        length = _machine_at(op, start[j], free, alt_ptr, alt_machine, alt_duration)[1]
    key[j] = _key(source, static[op], length, ready[j])


@njit(cache=True)
def _key(source: int, static: float, length: int, ready: int) -> float:  # pragma: no cover
    """A job's priority key (the smallest goes first) by where the rule's comes from."""
    if source == _STATIC:
        return static
    return float(length if source == _DURATION else ready)


def dispatch_arrays(cp: CompiledProblem, rule: str) -> tuple[list[int], list[int]]:
    """The dispatching pass on the array form: (machine index, start) per global operation.

    For callers that stay in index space (RL environment, policy fallback, benchmarks).
    """
    op_machine = np.zeros(cp.n_ops, dtype=np.int64)
    op_start = np.zeros(cp.n_ops, dtype=np.int64)
    complete(
        cp, rule, next_op=cp.job_op_start[:-1], job_ready=cp.release_time,
        machine_free=cp.machine_ready, op_machine=op_machine, op_start=op_start,
    )  # fmt: skip
    return op_machine.tolist(), op_start.tolist()


def complete(
    cp: CompiledProblem,
    rule: str,
    *,
    next_op: np.ndarray,
    job_ready: np.ndarray,
    machine_free: np.ndarray,
    op_machine: np.ndarray,
    op_start: np.ndarray,
) -> None:
    """Finish a partial plan by the rule: place every operation from each job's `next_op` on,
    after its job's `job_ready` and its machine's `machine_free`, writing `op_machine` and
    `op_start` (int64, per operation) in place; the state arrays are left as they were.

    From the first operations, the release times and the machines' ready times it is the
    rule's whole pass (`dispatch_arrays`); from a greedy pass cut short by its deadline
    (`rl.fast_policy.greedy_schedule`), the rest of that pass at a rule's cost.
    """
    name = _resolve(rule)
    _dispatch(
        cp.job_op_start, np.array(next_op, dtype=np.int64), np.array(job_ready, dtype=np.int64),
        np.array(machine_free, dtype=np.int64), cp.eligible, cp.alt_ptr, cp.alt_machine,
        cp.alt_duration, _static_keys(cp, name), _SOURCES.get(name, _STATIC), op_machine,
        op_start,
    )  # fmt: skip


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
