"""The compiled tabu-search loop (numba); `search.tabu` wraps it with time and problem handling.

One iteration: take a critical path of the current plan (a random one where several tie),
list its moves (`search.moves`), evaluate each from heads and tails, apply the best one that is
not tabu (a tabu move is allowed when it would beat the best plan: aspiration), recompute heads
and tails once. The reverse of an applied move is tabu for a random tenure. After `max_stall`
iterations without a new best, the search goes back to the best plan and perturbs it with a few
random critical moves (an iterated tabu search), which keeps long budgets productive.

All state lives in arrays the caller owns, so the loop runs in chunks between which the caller
checks the clock (numba cannot), and a chunked run is identical to one long run. Randomness is
a xorshift generator in one of those arrays: a seed gives the same plan on any thread.
"""

# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from jobshop_scheduler.search.graph import CYCLE, critical_path, heads_and_tails
from jobshop_scheduler.search.moves import (
    REASSIGN,
    SWAP,
    apply_reassign,
    apply_swap,
    collect_swaps,
    insert_position,
    reassign_value,
    swap_value,
)

IntArray = NDArray[np.int64]
UIntArray = NDArray[np.uint64]

TABU_CAPACITY = 64
# Positions in the `stats` array.
ITERATION, SINCE_BEST, CURRENT, BEST, TABU_NEXT = range(5)
N_STATS = 5
# Positions in the `params` array.
TENURE_MIN, TENURE_SPAN, MAX_STALL, PERTURB_MOVES = range(4)
_NO_VALUE = 2**62


@njit(cache=True)
def random_unit(rng: UIntArray) -> float:  # pragma: no cover - compiled
    """A float in [0, 1) from a xorshift64* generator whose state is rng[0]."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return float((x * np.uint64(2685821657736338717)) >> np.uint64(11)) / 9007199254740992.0


@njit(cache=True)
def _is_tabu(  # pragma: no cover - compiled
    a: int, b: int, tabu_a: IntArray, tabu_b: IntArray, tabu_until: IntArray, iteration: int
) -> bool:
    for i in range(tabu_a.shape[0]):
        if tabu_until[i] > iteration and tabu_a[i] == a and tabu_b[i] == b:
            return True
    return False


@njit(cache=True)
def _make_tabu(  # pragma: no cover - compiled
    a: int,
    b: int,
    tabu_a: IntArray,
    tabu_b: IntArray,
    tabu_until: IntArray,
    stats: IntArray,
    params: IntArray,
    rng: UIntArray,
) -> None:
    i = stats[TABU_NEXT]
    tabu_a[i], tabu_b[i] = a, b
    span = params[TENURE_SPAN]
    tabu_until[i] = stats[ITERATION] + params[TENURE_MIN] + int(random_unit(rng) * (span + 1))
    stats[TABU_NEXT] = (i + 1) % tabu_a.shape[0]


@njit(cache=True)
def _collect_reassigns(  # pragma: no cover - compiled
    path: IntArray,
    length: int,
    n_moves: int,
    machine: IntArray,
    alt_machine: IntArray,
    move_a: IntArray,
    move_b: IntArray,
    move_kind: IntArray,
) -> int:
    """Append a reassign move per critical operation and other eligible machine."""
    for i in range(length):
        op = path[i]
        for j in range(alt_machine.shape[1]):
            k = alt_machine[op, j]
            if k < 0:
                break
            if k != machine[op] and n_moves < move_a.shape[0]:
                move_a[n_moves], move_b[n_moves], move_kind[n_moves] = op, k, REASSIGN
                n_moves += 1
    return n_moves


@njit(cache=True, nogil=True)
def _refresh(  # pragma: no cover - compiled
    job_pred: IntArray,
    job_succ: IntArray,
    release: IntArray,
    machine_ready: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
    work: IntArray,
) -> int:
    """Heads, tails and topological ranks (rows of ``work``) of the current plan; its makespan
    or CYCLE."""
    order, rank = work[2], work[4]
    makespan = heads_and_tails(
        job_pred, job_succ, release, machine_ready, machine, duration, seq, count, position,
        work[0], work[1], order, work[3],
    )  # fmt: skip
    if makespan != CYCLE:
        for i in range(order.shape[0]):
            rank[order[i]] = i
    return makespan


@njit(cache=True)
def _apply(  # pragma: no cover - compiled
    kind: int,
    a: int,
    b: int,
    machine: IntArray,
    duration: IntArray,
    duration_matrix: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
    rank: IntArray,
) -> int:
    """Apply a move; return what undoes it: for a swap nothing, for a reassign the old machine."""
    if kind == SWAP:
        apply_swap(a, b, machine, seq, position)
        return -1
    old = machine[a]
    at = insert_position(a, b, seq, count, rank)
    apply_reassign(a, b, at, machine, duration, duration_matrix, seq, count, position)
    return int(old)


@njit(cache=True)
def _apply_and_refresh(  # pragma: no cover - compiled
    kind: int,
    a: int,
    b: int,
    job_pred: IntArray,
    job_succ: IntArray,
    release: IntArray,
    machine_ready: IntArray,
    duration_matrix: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
    work: IntArray,
) -> tuple[int, int, bool]:
    """Apply a move and recompute: (makespan, what undoes it, applied). A move that closes a
    cycle (possible only with zero durations) is undone at once."""
    rank = work[4]
    undo = _apply(kind, a, b, machine, duration, duration_matrix, seq, count, position, rank)
    makespan = _refresh(
        job_pred, job_succ, release, machine_ready, machine, duration, seq, count, position, work
    )
    if makespan != CYCLE:
        return makespan, undo, True
    if kind == SWAP:
        apply_swap(b, a, machine, seq, position)
    else:  # ranks are still those of the plan before the move
        at = insert_position(a, undo, seq, count, rank)
        apply_reassign(a, undo, at, machine, duration, duration_matrix, seq, count, position)
    makespan = _refresh(
        job_pred, job_succ, release, machine_ready, machine, duration, seq, count, position, work
    )
    return makespan, undo, False


@njit(cache=True)
def _moves_on_path(  # pragma: no cover - compiled
    job_pred: IntArray,
    job_succ: IntArray,
    alt_machine: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    position: IntArray,
    work: IntArray,
    moves: IntArray,
    makespan: int,
    pick: float,
) -> int:
    """Write the moves of one critical path (``pick`` chooses among tied paths) into ``moves``."""
    head, tail, path = work[0], work[1], work[5]
    length = critical_path(
        job_pred, machine, duration, seq, position, head, tail, makespan, path, pick
    )
    n_moves = collect_swaps(
        path, length, job_succ, machine, position, head, moves[0], moves[1], moves[2]
    )
    if alt_machine.shape[1] > 1:
        n_moves = _collect_reassigns(
            path, length, n_moves, machine, alt_machine, moves[0], moves[1], moves[2]
        )
    return n_moves


@njit(cache=True, nogil=True)
def tabu_run(  # pragma: no cover - compiled  # noqa: C901, PLR0912
    iterations: int,
    lower_bound: int,
    job_pred: IntArray,
    job_succ: IntArray,
    release: IntArray,
    machine_ready: IntArray,
    duration_matrix: IntArray,
    alt_machine: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
    best_machine: IntArray,
    best_seq: IntArray,
    best_count: IntArray,
    best_position: IntArray,
    work: IntArray,
    moves: IntArray,
    tabu: IntArray,
    stats: IntArray,
    params: IntArray,
    rng: UIntArray,
) -> None:
    """Run `iterations` iterations (fewer once the best reaches the lower bound), in place.

    ``work`` rows: head, tail, order, indegree, rank, path. ``moves`` rows: first operand,
    second operand, kind. ``tabu`` rows: first operand, second operand, until.
    The current plan's heads, tails and ranks must be up to date on entry; they are on exit.
    """
    head, tail, rank = work[0], work[1], work[4]
    move_a, move_b, move_kind = moves[0], moves[1], moves[2]
    tabu_a, tabu_b, tabu_until = tabu[0], tabu[1], tabu[2]
    for _ in range(iterations):
        if stats[BEST] <= lower_bound:
            return
        stats[ITERATION] += 1
        iteration = stats[ITERATION]
        n_moves = _moves_on_path(
            job_pred, job_succ, alt_machine, machine, duration, seq, position, work, moves,
            stats[CURRENT], random_unit(rng),
        )  # fmt: skip
        chosen, chosen_value, ties = -1, _NO_VALUE, 0
        for i in range(n_moves):
            a, b = move_a[i], move_b[i]
            if move_kind[i] == SWAP:
                value = swap_value(
                    a, b, job_pred, job_succ, release, machine_ready, machine, duration, seq,
                    count, position, head, tail,
                )  # fmt: skip
            else:
                value = reassign_value(
                    a, b, job_pred, job_succ, release, machine_ready, duration_matrix, duration,
                    seq, count, head, tail, rank,
                )  # fmt: skip
            if value > chosen_value:
                continue  # the tabu list is only read for moves that could be chosen
            if value >= stats[BEST] and _is_tabu(
                a, b if move_kind[i] == SWAP else -1 - b, tabu_a, tabu_b, tabu_until, iteration
            ):
                continue
            if value < chosen_value:
                chosen, chosen_value, ties = i, value, 1
            else:
                ties += 1
                if random_unit(rng) * ties < 1.0:
                    chosen = i
        if n_moves == 0:
            stats[SINCE_BEST] = params[MAX_STALL]  # nothing to try here: restart from the best
        elif chosen < 0:
            chosen = int(random_unit(rng) * n_moves)  # every move tabu: take any
        if chosen >= 0:
            kind, a, b = move_kind[chosen], move_a[chosen], move_b[chosen]
            makespan, undo, applied = _apply_and_refresh(
                kind, a, b, job_pred, job_succ, release, machine_ready, duration_matrix, machine,
                duration, seq, count, position, work,
            )  # fmt: skip
            if not applied:  # do not try it again soon
                _make_tabu(a, b if kind == SWAP else -1 - b, tabu_a, tabu_b, tabu_until, stats,
                           params, rng)  # fmt: skip
            elif kind == SWAP:
                _make_tabu(b, a, tabu_a, tabu_b, tabu_until, stats, params, rng)
            else:
                _make_tabu(a, -1 - undo, tabu_a, tabu_b, tabu_until, stats, params, rng)
            stats[CURRENT] = makespan
            if makespan < stats[BEST]:
                stats[BEST] = makespan
                stats[SINCE_BEST] = 0
                best_machine[:] = machine
                best_seq[:, :] = seq
                best_count[:] = count
                best_position[:] = position
            else:
                stats[SINCE_BEST] += 1
        if stats[SINCE_BEST] >= params[MAX_STALL]:
            _restart(
                job_pred, job_succ, release, machine_ready, duration_matrix, alt_machine,
                machine, duration, seq, count, position, best_machine, best_seq, best_count,
                best_position, work, moves, tabu, stats, params, rng,
            )  # fmt: skip


@njit(cache=True)
def _restart(  # pragma: no cover - compiled
    job_pred: IntArray,
    job_succ: IntArray,
    release: IntArray,
    machine_ready: IntArray,
    duration_matrix: IntArray,
    alt_machine: IntArray,
    machine: IntArray,
    duration: IntArray,
    seq: IntArray,
    count: IntArray,
    position: IntArray,
    best_machine: IntArray,
    best_seq: IntArray,
    best_count: IntArray,
    best_position: IntArray,
    work: IntArray,
    moves: IntArray,
    tabu: IntArray,
    stats: IntArray,
    params: IntArray,
    rng: UIntArray,
) -> None:
    """Back to the best plan, then a few random critical moves; the tabu list is cleared."""
    machine[:] = best_machine
    seq[:, :] = best_seq
    count[:] = best_count
    position[:] = best_position
    for i in range(machine.shape[0]):
        duration[i] = duration_matrix[i, machine[i]]
    tabu[2, :] = 0
    stats[SINCE_BEST] = 0
    makespan = _refresh(
        job_pred, job_succ, release, machine_ready, machine, duration, seq, count, position, work
    )
    for _ in range(params[PERTURB_MOVES]):
        n_moves = _moves_on_path(
            job_pred, job_succ, alt_machine, machine, duration, seq, position, work, moves,
            makespan, random_unit(rng),
        )  # fmt: skip
        if n_moves == 0:
            break
        i = int(random_unit(rng) * n_moves)
        makespan, _, _ = _apply_and_refresh(
            moves[2, i], moves[0, i], moves[1, i], job_pred, job_succ, release, machine_ready,
            duration_matrix, machine, duration, seq, count, position, work,
        )  # fmt: skip
    stats[CURRENT] = makespan
