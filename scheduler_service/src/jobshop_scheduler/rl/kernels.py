"""Compiled inner loops of the dispatching state and the feature table (numba).

The environment (training) and the greedy serving loop both call these, so the policy sees
byte-identical features in both places. They exist because the per-step work is a few loops over
jobs and machines: in NumPy each step paid for ~60 small array operations, which made one greedy
pass on 170 jobs take about a second; compiled, the step costs a few microseconds and the
scorer's matrix products dominate.

Compiled on first use and cached on disk (`cache=True`; `NUMBA_CACHE_DIR` redirects the cache
where the package folder is read-only).
"""

# Kernels take their arrays positionally: that is how numba passes them.
# ruff: noqa: PLR0917

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

NO_MACHINE = np.iinfo(np.int64).max // 4
FEATURE_BOUND = 1e4  # observation space bounds; values are clipped into them
_UNUSABLE = 2**48
N_COLUMNS = 26  # `features.FEATURES` names them; features.py checks the count


@njit(cache=True)
def _candidate_extremes(  # pragma: no cover - compiled
    next_op: NDArray[np.int64],
    end_op: NDArray[np.int64],
    candidates: NDArray[np.bool_],
    work_from: NDArray[np.int64],
    op_min_duration: NDArray[np.int64],
) -> tuple[float, float, float]:
    """(max work left, max operations left, min duration) over the candidates, the rank bases."""
    cand_work, cand_ops, cand_dur = 1.0, 1.0, np.inf
    for j in range(next_op.shape[0]):
        if candidates[j]:
            op = next_op[j]
            cand_work = max(cand_work, float(work_from[op]))
            cand_ops = max(cand_ops, float(end_op[j] - op))
            cand_dur = min(cand_dur, float(op_min_duration[op]))
    return cand_work, cand_ops, cand_dur if np.isfinite(cand_dur) else 1.0


@njit(cache=True)
def refresh(  # pragma: no cover - compiled
    next_op: NDArray[np.int64],
    end_op: NDArray[np.int64],
    job_ready: NDArray[np.int64],
    machine_free: NDArray[np.int64],
    eligible: NDArray[np.bool_],
    makespan: int,
    est: NDArray[np.int64],
    active: NDArray[np.bool_],
    candidates: NDArray[np.bool_],
    duration_matrix: NDArray[np.int64],
    window: float,
) -> int:
    """Fill est/active/candidates in place; return t*, the earliest start of any next operation.

    `window` 0: non-delay, the candidates are the jobs that can start at t*. Above 0: the
    Giffler-Thompson conflict set, widened by `window` from the non-delay one. The machine m*
    and time C* of the earliest possible completion decide; the candidates are the jobs bound
    for m* that can start before t_m + window * (C* - t_m), where t_m is the earliest start on
    m*. Window 1 is the classic active-schedule generator, which can reach every active
    schedule, the optimal one among them; non-delay dispatching can miss it.
    """
    n_jobs, n_machines = next_op.shape[0], machine_free.shape[0]
    t_star = NO_MACHINE
    for j in range(n_jobs):
        active[j] = next_op[j] < end_op[j]
        if not active[j]:
            est[j] = NO_MACHINE
            continue
        op = next_op[j]
        free = NO_MACHINE
        for k in range(n_machines):
            if eligible[op, k] and machine_free[k] < free:
                free = machine_free[k]
        est[j] = max(job_ready[j], free)
        t_star = min(t_star, est[j])
    if t_star == NO_MACHINE:
        t_star = makespan
    if window <= 0.0:
        for j in range(n_jobs):
            candidates[j] = active[j] and est[j] == t_star
    else:
        _conflict_set(next_op, machine_free, eligible, est, active, duration_matrix, window,
                      candidates)  # fmt: skip
    return t_star


@njit(cache=True)
def _conflict_set(  # pragma: no cover - compiled
    next_op: NDArray[np.int64],
    machine_free: NDArray[np.int64],
    eligible: NDArray[np.bool_],
    est: NDArray[np.int64],
    active: NDArray[np.bool_],
    duration_matrix: NDArray[np.int64],
    window: float,
    candidates: NDArray[np.bool_],
) -> None:
    """`refresh`'s candidates for a window above 0 (its docstring)."""
    n_jobs = next_op.shape[0]
    # each job's machine (as `place` would pick it), the earliest completion C* and its machine
    best_end, best_machine = NO_MACHINE, -1
    for j in range(n_jobs):
        candidates[j] = False
        if active[j]:
            op = next_op[j]
            k = machine_for(op, est[j], machine_free, duration_matrix, eligible)
            end = est[j] + duration_matrix[op, k]
            if end < best_end:
                best_end, best_machine = end, k
    start_on_best = NO_MACHINE
    for j in range(n_jobs):
        if active[j]:
            k = machine_for(next_op[j], est[j], machine_free, duration_matrix, eligible)
            if k == best_machine:
                candidates[j] = True
                start_on_best = min(start_on_best, est[j])
    limit = start_on_best + window * (best_end - start_on_best)
    for j in range(n_jobs):
        if candidates[j] and not (est[j] < limit or est[j] == start_on_best):
            candidates[j] = False


@njit(cache=True)
def machine_for(  # pragma: no cover - compiled
    op: int,
    start: int,
    machine_free: NDArray[np.int64],
    duration_matrix: NDArray[np.int64],
    eligible: NDArray[np.bool_],
) -> int:
    """The machine an operation starting at `start` takes: free by then, shortest, lowest index."""
    best, best_duration = -1, _UNUSABLE
    for k in range(machine_free.shape[0]):
        if eligible[op, k] and machine_free[k] <= start and duration_matrix[op, k] < best_duration:
            best, best_duration = k, duration_matrix[op, k]
    return best


@njit(cache=True)
def place(  # pragma: no cover - compiled
    job: int,
    next_op: NDArray[np.int64],
    job_ready: NDArray[np.int64],
    est: NDArray[np.int64],
    machine_free: NDArray[np.int64],
    machine_load: NDArray[np.int64],
    single_machine: NDArray[np.int64],
    duration_matrix: NDArray[np.int64],
    eligible: NDArray[np.bool_],
    op_min_duration: NDArray[np.int64],
    op_machine: NDArray[np.int64],
    op_start: NDArray[np.int64],
) -> int:
    """Put the job's next operation on its machine at its earliest start (t* when
    dispatching non-delay); return the operation's end."""
    op = next_op[job]
    machine = machine_for(op, est[job], machine_free, duration_matrix, eligible)
    start = est[job]
    end = start + duration_matrix[op, machine]
    op_machine[op], op_start[op] = machine, start
    machine_free[machine] = end
    job_ready[job] = end
    if single_machine[op] >= 0:
        machine_load[machine] -= op_min_duration[op]
    next_op[job] = op + 1
    return int(end)


@njit(cache=True)
def _fast_start(  # pragma: no cover - compiled
    op: int,
    ready: int,
    machine_free: NDArray[np.int64],
    duration_matrix: NDArray[np.int64],
    eligible: NDArray[np.bool_],
) -> int:
    """Earliest start of an operation on one of its fastest eligible machines."""
    fastest, free = _UNUSABLE, NO_MACHINE
    for k in range(machine_free.shape[0]):
        if eligible[op, k]:
            if duration_matrix[op, k] < fastest:
                fastest, free = duration_matrix[op, k], machine_free[k]
            elif duration_matrix[op, k] == fastest:
                free = min(free, machine_free[k])
    return max(free, ready)


@njit(cache=True)
def _bounded(value: float) -> float:  # pragma: no cover - compiled
    return min(max(value, -FEATURE_BOUND), FEATURE_BOUND)


@njit(cache=True)
def _route_columns(  # pragma: no cover - compiled
    row: NDArray[np.float32],
    after: int,
    machine_free: NDArray[np.int64],
    machine_load: NDArray[np.int64],
    end: int,
    top_load: float,
    scale_duration: float,
    scale_work: float,
) -> None:
    """Columns 22-24: the machine the job meets after this operation (`after`; -1: none)."""
    if after < 0:
        row[22] = row[23] = row[24] = 0.0
        return
    row[22] = _bounded((machine_free[after] - end) / scale_duration)
    row[23] = _bounded(machine_load[after] / scale_work)
    row[24] = machine_load[after] / top_load


@njit(cache=True)
def features(  # noqa: PLR0915 - one statement per column  # pragma: no cover - compiled
    next_op: NDArray[np.int64],
    end_op: NDArray[np.int64],
    job_op_start: NDArray[np.int64],
    job_ready: NDArray[np.int64],
    est: NDArray[np.int64],
    active: NDArray[np.bool_],
    candidates: NDArray[np.bool_],
    machine_free: NDArray[np.int64],
    machine_load: NDArray[np.int64],
    eligible: NDArray[np.bool_],
    duration_matrix: NDArray[np.int64],
    op_min_duration: NDArray[np.int64],
    work_from: NDArray[np.int64],
    due_date: NDArray[np.float64],
    priority: NDArray[np.int64],
    t_star: int,
    shop_progress: float,
    scale_duration: float,
    scale_ops: float,
    scale_work: float,
    scale_horizon: float,
    window: float,
    single_machine: NDArray[np.int64],
    alike: float,
    out: NDArray[np.float32],
    compact: bool,
    candidate_rows: NDArray[np.int64],
) -> int:
    """Fill the feature table (columns as `features.FEATURES`); return the number of rows.

    Padded (`compact` false): row j is job j, finished jobs get zero rows, as the environment's
    observation needs. Compact: one row per active job in job order, and `candidate_rows` gets
    the rows of the candidates, as the serving scorer needs.
    """
    n_jobs = next_op.shape[0]
    cand_work, cand_ops, cand_dur = _candidate_extremes(
        next_op, end_op, candidates, work_from, op_min_duration
    )
    d, w = scale_duration, scale_work
    time_progress = t_star / scale_horizon
    # the route columns are for classic shops (`alike` is 0 on flexible ones, `FeatureScales`)
    routed = alike > 0.0
    top_load = 1.0
    for k in range(machine_load.shape[0]):
        top_load = max(top_load, float(machine_load[k]))
    rows, n_candidates = 0, 0
    for j in range(n_jobs):
        if not active[j]:
            if not compact:
                out[j, :] = 0.0
            continue
        r = rows if compact else j
        rows += 1
        if compact and candidates[j]:
            candidate_rows[n_candidates] = r
            n_candidates += 1
        op = next_op[j]
        last = end_op[j]
        total_ops = float(job_op_start[j + 1] - job_op_start[j])
        ops_left = float(last - op)
        work_left = float(work_from[op])
        duration = float(op_min_duration[op])
        next_duration = float(op_min_duration[op + 1]) if op + 1 < last else 0.0
        machine = machine_for(op, est[j], machine_free, duration_matrix, eligible)
        taken = float(duration_matrix[op, machine])
        fast_start = _fast_start(op, job_ready[j], machine_free, duration_matrix, eligible)
        due = due_date[j]
        slack = (due - t_star - work_left) / w if np.isfinite(due) else 0.0
        row = out[r]
        row[0] = 1.0
        row[1] = 1.0 if candidates[j] else 0.0
        row[2] = _bounded((est[j] - t_star) / d)
        row[3] = _bounded(duration / d)
        row[4] = _bounded(next_duration / d)
        row[5] = _bounded(work_left / w)
        row[6] = _bounded(ops_left / scale_ops)
        row[7] = _bounded(1.0 - ops_left / max(total_ops, 1.0))
        row[8] = _bounded((t_star - machine_free[machine]) / d)
        row[9] = _bounded(machine_load[machine] / w)
        row[10] = _bounded(work_left / cand_work)
        row[11] = _bounded(ops_left / cand_ops)
        row[12] = _bounded(cand_dur / max(duration, 1.0))
        row[13] = _bounded((t_star - job_ready[j]) / d)
        row[14] = min(max(slack, -5.0), 5.0)
        row[15] = _bounded(priority[j] / 3.0)
        row[16] = shop_progress
        row[17] = _bounded(time_progress)
        row[18] = _bounded((taken - duration) / d)
        row[19] = 1.0 - duration / taken if taken > 0 else 0.0
        row[20] = _bounded((fast_start - est[j]) / d)
        row[21] = window if window > 0.0 else (-1.0 if window < 0.0 else 0.0)
        after = single_machine[op + 1] if routed and op + 1 < last else -1
        _route_columns(row, after, machine_free, machine_load, est[j] + taken, top_load, d, w)
        row[25] = alike
    return rows if compact else n_jobs


# tanh on [-_TANH_CLAMP, _TANH_CLAMP] as the ratio of an odd degree-13 and an even degree-6
# polynomial (the minimax fit Eigen uses for float32): within 3e-7 of tanh everywhere, and
# beyond the clamp tanh is 1 to float32 precision.
_TANH_CLAMP = np.float32(7.90531110763549805)
_TANH_P = tuple(np.float32(c) for c in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
))  # fmt: skip
_TANH_Q = tuple(np.float32(c) for c in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,
))  # fmt: skip


@njit(cache=True, fastmath=True, error_model="numpy")
def add_tanh(  # pragma: no cover - compiled
    values: NDArray[np.floating[Any]], bias: NDArray[np.floating[Any]]
) -> None:
    """values[i, j] = tanh(values[i, j] + bias[j]), in place (bias may be longer than a row).

    The scorer's three activations were most of a greedy pass on CPUs without AVX-512, where
    NumPy's float32 tanh is a scalar libm call per element (~7 ns); these polynomials have no
    calls and no branches, so the loop vectorises (~1 ns).
    """
    p0, p1, p2, p3, p4, p5, p6 = _TANH_P
    q0, q1, q2, q3 = _TANH_Q
    rows, width = values.shape
    for i in range(rows):
        for j in range(width):
            x = min(max(values[i, j] + bias[j], -_TANH_CLAMP), _TANH_CLAMP)
            x2 = x * x
            p = ((((((p0 * x2 + p1) * x2 + p2) * x2 + p3) * x2 + p4) * x2 + p5) * x2 + p6) * x
            q = ((q0 * x2 + q1) * x2 + q2) * x2 + q3
            values[i, j] = p / q
