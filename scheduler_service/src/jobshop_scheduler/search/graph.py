"""The disjunctive graph of a plan: machine sequences, heads, tails and critical paths (numba).

A plan is a machine per operation and an order of operations on every machine. With the job
chains, these orders make a directed acyclic graph whose longest paths give every operation's
earliest start (its *head* r) and the longest way from its end to the end of the plan (its
*tail* q). The makespan is ``max(r + p)``; an operation with ``r + p + q == makespan`` is
critical. Release times and machines that are busy until some time (earlier batches) are heads
of the first operation of a job and of the first operation on a machine.

Sequences are kept as a (machines, operations) table ``seq`` with a count per machine and a
position per operation, so the search swaps two neighbours in O(1) and moves an operation to
another machine in O(length). Heads and tails are recomputed in O(operations) by one
topological pass; a pass that cannot order every operation reports a cycle (-1), which the
search treats as an infeasible move and undoes.
"""

# Kernels take their arrays positionally: that is how numba passes them.
# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

IntArray = NDArray[np.int64]

CYCLE = -1


@njit(cache=True)
def sequences_from_starts(  # pragma: no cover - compiled
    op_machine: IntArray, op_start: IntArray, n_machines: int
) -> tuple[IntArray, IntArray, IntArray]:
    """(seq, count, position) of a plan: each machine's operations in order of start time.

    Ties (zero-length operations) keep operation index order, which the job chains respect.
    """
    n = op_machine.shape[0]
    order = np.argsort(op_start * (n + 1) + np.arange(n))
    seq = np.full((n_machines, max(n, 1)), -1, dtype=np.int64)
    count = np.zeros(n_machines, dtype=np.int64)
    position = np.zeros(n, dtype=np.int64)
    for i in range(n):
        op = order[i]
        k = op_machine[op]
        seq[k, count[k]] = op
        position[op] = count[k]
        count[k] += 1
    return seq, count, position


@njit(cache=True, nogil=True)
def heads_and_tails(  # pragma: no cover - compiled  # noqa: C901, PLR0912
    job_pred: IntArray,
    job_succ: IntArray,
    release: IntArray,
    machine_ready: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
    head: IntArray,
    tail: IntArray,
    order: IntArray,
    indegree: IntArray,
) -> int:
    """Fill head, tail and a topological order in place; return the makespan, or CYCLE."""
    n = job_pred.shape[0]
    for op in range(n):
        k = machine[op]
        indegree[op] = (job_pred[op] >= 0) + (position[op] > 0)
        head[op] = release[op]
        if position[op] == 0 and machine_ready[k] > head[op]:
            head[op] = machine_ready[k]
    size = 0
    for op in range(n):
        if indegree[op] == 0:
            order[size] = op
            size += 1
    done = 0
    while done < size:
        op = order[done]
        done += 1
        end = head[op] + duration[op]
        nxt = job_succ[op]
        if nxt >= 0:
            head[nxt] = max(head[nxt], end)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                order[size] = nxt
                size += 1
        k, p = machine[op], position[op]
        if p + 1 < count[k]:
            nxt = seq[k, p + 1]
            head[nxt] = max(head[nxt], end)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                order[size] = nxt
                size += 1
    if done < n:
        return CYCLE
    makespan = 0
    for i in range(n - 1, -1, -1):
        op = order[i]
        q = 0
        nxt = job_succ[op]
        if nxt >= 0:
            q = tail[nxt] + duration[nxt]
        k, p = machine[op], position[op]
        if p + 1 < count[k]:
            nxt = seq[k, p + 1]
            q = max(q, tail[nxt] + duration[nxt])
        tail[op] = q
        makespan = max(makespan, head[op] + duration[op] + q)
    return makespan


@njit(cache=True)
def critical_path(  # pragma: no cover - compiled
    job_pred: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    position: IntArray,
    head: IntArray,
    tail: IntArray,
    makespan: int,
    path: IntArray,
    pick: float,
) -> int:
    """Write one critical path into ``path`` (first operation first); return its length.

    Where both the job and the machine predecessor are tight, ``pick`` (in [0, 1)) chooses:
    the search passes random numbers so that it sees different critical paths over time.
    """
    n = job_pred.shape[0]
    last = -1
    for op in range(n):
        if head[op] + duration[op] == makespan and tail[op] == 0:
            last = op
            break
    length = 0
    op = last
    while op >= 0:
        path[length] = op
        length += 1
        jp = job_pred[op]
        mp = seq[machine[op], position[op] - 1] if position[op] > 0 else -1
        job_tight = jp >= 0 and head[jp] + duration[jp] == head[op]
        machine_tight = mp >= 0 and head[mp] + duration[mp] == head[op]
        if job_tight and machine_tight:
            op = mp if pick < 0.5 else jp
        elif machine_tight:
            op = mp
        elif job_tight:
            op = jp
        else:
            op = -1
    path[:length] = path[:length][::-1].copy()
    return length
