"""Neighbourhood moves on the disjunctive graph and their evaluation from heads and tails (numba).

Two kinds of move, both on a critical path of the current plan:

- **swap** (N5, Nowicki and Smutnicki): exchange the first two or the last two operations of a
  critical block (a run of critical operations on one machine). Swapping operations inside a
  block, or the first two of the path's first block when that path starts at time 0, or the
  last two of its last block, cannot shorten the path, so those moves are not generated.
  Swapping two neighbours on a critical path never makes a cycle when durations are positive,
  unless they are consecutive operations of one job (then they are not swapped).
- **reassign** (flexible shops): move a critical operation to another eligible machine. It is
  inserted where its topological rank falls in that machine's sequence, so every arc of the new
  graph still goes forward in one fixed order: the move cannot make a cycle either.

A swap of u before v is evaluated exactly, without a full recomputation: from the unchanged
heads of their job predecessors and of u's machine predecessor, and the unchanged tails of their
job successors and of v's machine successor, the new longest path through u or v is

    r'(v) = max(job head of v, end of u's machine predecessor)
    r'(u) = max(job head of u, r'(v) + p(v))
    q'(u) = max(job tail of u, tail of v's machine successor + its duration)
    q'(v) = max(job tail of v, q'(u) + p(u))
    value = max(r'(v) + p(v) + q'(v), r'(u) + p(u) + q'(u))

(exact whenever the swap leaves the graph acyclic; the property tests check it against a full
recomputation). The new makespan is the larger of that and the longest path avoiding u and v.
A reassign is evaluated the same way through the moved operation alone, with the heads and
tails of the old graph, which makes it an estimate.
"""

# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

IntArray = NDArray[np.int64]

SWAP = 0
REASSIGN = 1


@njit(cache=True)
def job_head(  # pragma: no cover - compiled
    op: int, job_pred: IntArray, release: IntArray, head: IntArray, duration: IntArray
) -> int:
    """Earliest start an operation owes to its job alone."""
    jp = job_pred[op]
    if jp < 0:
        return int(release[op])
    return int(max(release[op], head[jp] + duration[jp]))


@njit(cache=True)
def job_tail(  # pragma: no cover - compiled
    op: int, job_succ: IntArray, tail: IntArray, duration: IntArray
) -> int:
    """Time after an operation's end that its job alone still needs."""
    js = job_succ[op]
    return 0 if js < 0 else int(tail[js] + duration[js])


@njit(cache=True)
def swap_value(  # pragma: no cover - compiled
    u: int,
    v: int,
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
) -> int:
    """Longest path through u or v once v goes before u (u directly before v on a machine)."""
    k = machine[u]
    pu = position[u]
    if pu > 0:
        a = seq[k, pu - 1]
        before = head[a] + duration[a]
    else:
        before = machine_ready[k]
    pv = position[v]
    after = 0
    if pv + 1 < count[k]:
        b = seq[k, pv + 1]
        after = tail[b] + duration[b]
    rv = max(job_head(v, job_pred, release, head, duration), before)
    ru = max(job_head(u, job_pred, release, head, duration), rv + duration[v])
    qu = max(job_tail(u, job_succ, tail, duration), after)
    qv = max(job_tail(v, job_succ, tail, duration), qu + duration[u])
    return int(max(rv + duration[v] + qv, ru + duration[u] + qu))


@njit(cache=True)
def insert_position(  # pragma: no cover - compiled
    op: int, k: int, seq: IntArray, count: IntArray, rank: IntArray
) -> int:
    """Where ``op`` goes in machine k's sequence: after every operation of lower rank."""
    lo, hi = 0, count[k]
    while lo < hi:
        mid = (lo + hi) // 2
        if rank[seq[k, mid]] < rank[op]:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def reassign_value(  # pragma: no cover - compiled
    op: int,
    k: int,
    job_pred: IntArray,
    job_succ: IntArray,
    release: IntArray,
    machine_ready: IntArray,
    duration_matrix: IntArray,
    duration: IntArray,
    seq: IntArray,
    count: IntArray,
    head: IntArray,
    tail: IntArray,
    rank: IntArray,
) -> int:
    """Estimated longest path through ``op`` once it runs on machine k (see the module doc)."""
    at = insert_position(op, k, seq, count, rank)
    before = machine_ready[k]
    if at > 0:
        a = seq[k, at - 1]
        before = head[a] + duration[a]
    after = 0
    if at < count[k]:
        b = seq[k, at]
        after = tail[b] + duration[b]
    start = max(job_head(op, job_pred, release, head, duration), before)
    rest = max(job_tail(op, job_succ, tail, duration), after)
    return int(start + duration_matrix[op, k] + rest)


@njit(cache=True)
def apply_swap(  # pragma: no cover - compiled
    u: int, v: int, machine: IntArray, seq: IntArray, position: IntArray
) -> None:
    """Exchange neighbours u (first) and v on their machine; applying it again undoes it."""
    k = machine[u]
    pu, pv = position[u], position[v]
    seq[k, pu], seq[k, pv] = v, u
    position[u], position[v] = pv, pu


@njit(cache=True)
def apply_reassign(  # pragma: no cover - compiled
    op: int,
    k: int,
    at: int,
    machine: IntArray,
    duration: IntArray,
    duration_matrix: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
) -> None:
    """Take ``op`` off its machine and insert it into machine k's sequence at index ``at``."""
    a = machine[op]
    for i in range(position[op], count[a] - 1):
        moved = seq[a, i + 1]
        seq[a, i] = moved
        position[moved] = i
    count[a] -= 1
    seq[a, count[a]] = -1
    for i in range(count[k], at, -1):
        moved = seq[k, i - 1]
        seq[k, i] = moved
        position[moved] = i
    seq[k, at] = op
    position[op] = at
    count[k] += 1
    machine[op] = k
    duration[op] = duration_matrix[op, k]


@njit(cache=True)
def collect_swaps(  # pragma: no cover - compiled
    path: IntArray,
    length: int,
    job_succ: IntArray,
    machine: IntArray,
    position: IntArray,
    head: IntArray,
    move_a: IntArray,
    move_b: IntArray,
    move_kind: IntArray,
) -> int:
    """Write the N5 swaps of a critical path into the move buffers; return how many."""
    n_moves = 0
    start = 0
    while start < length:
        end = start
        while (
            end + 1 < length
            and machine[path[end + 1]] == machine[path[start]]
            and position[path[end + 1]] == position[path[end]] + 1
        ):
            end += 1
        if end > start:
            # The path's first block starts at a release or machine-ready time; swapping its
            # first two can only help when that time is not 0.
            first = start > 0 or head[path[0]] > 0
            # Two operations of one job in a row on one machine keep their order: swapping them
            # is the one way a critical swap closes a cycle.
            if first and job_succ[path[start]] != path[start + 1]:
                move_a[n_moves], move_b[n_moves] = path[start], path[start + 1]
                move_kind[n_moves] = SWAP
                n_moves += 1
            if (
                end < length - 1
                and (end - 1 > start or not first)
                and job_succ[path[end - 1]] != path[end]
            ):
                move_a[n_moves], move_b[n_moves] = path[end - 1], path[end]
                move_kind[n_moves] = SWAP
                n_moves += 1
        start = end + 1
    return n_moves
