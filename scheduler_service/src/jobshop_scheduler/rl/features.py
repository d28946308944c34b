"""Size-agnostic per-job features: one row per job, the same columns for 15 or 170 jobs.

Every quantity is scaled by instance statistics (mean operation duration, mean job work), and
the rank-like columns compare a job with the other candidates, so one scorer can weigh the
signals the legacy rules use (remaining work, operations left, duration) against machine
contention and waiting times on any instance size.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.rl.state import ShopState

FloatArray = NDArray[np.float32]

FEATURES = (
    "present",  # job still has operations (0 on finished and padding rows)
    "candidate",  # its next operation can start at t*
    "wait_to_start",  # (earliest start - t*) / mean duration
    "duration",  # next operation's duration / mean duration
    "next_duration",  # the operation after it / mean duration
    "work_left",  # remaining work / mean job work
    "ops_left",  # remaining operations / mean operations per job
    "progress",  # fraction of the job done
    "machine_idle",  # (t* - machine free time) / mean duration, on the machine it would take
    "machine_load",  # remaining single-machine load of that machine / mean job work
    "rank_work",  # work_left / max work_left among candidates
    "rank_ops",  # ops_left / max ops_left among candidates
    "rank_duration",  # min candidate duration / this duration
    "job_waiting",  # (t* - job ready time) / mean duration
    "slack",  # (due - t* - work left) / mean job work, clipped; 0 without due date
    "priority",  # priority / 3
    "shop_progress",  # fraction of all operations scheduled
    "time_progress",  # t* / initial lower bound
)
N_FEATURES = len(FEATURES)
FEATURE_BOUND = 1e4  # observation space bounds; values are clipped into them
_UNUSABLE = np.int64(2**48)


class FeatureScales:
    """Per-instance normalisers, computed once per episode."""

    def __init__(self, state: ShopState) -> None:
        cp = state.cp
        self.duration = float(max(cp.op_min_duration.mean(), 1.0)) if cp.n_ops else 1.0
        self.ops = float(max(cp.job_n_ops.mean(), 1.0)) if cp.n_jobs else 1.0
        self.work = self.duration * self.ops
        self.horizon = float(max(state.lower_bound(), 1))


def _machine_columns(state: ShopState, jobs: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """For each active job: (t* - free time, remaining load) of the machine it would take."""
    cp = state.cp
    ops = state.next_op[jobs]
    start = state.est[jobs][:, None]
    usable = cp.eligible[ops] & (state.machine_free[None, :] <= start)
    # shortest duration first, then lowest machine index: the rule state.machine_for applies
    cost = np.where(usable, cp.duration_matrix[ops] * (cp.n_machines + 1), _UNUSABLE)
    machine = np.argmin(cost + np.arange(cp.n_machines)[None, :], axis=1)
    idle = (state.t_star - state.machine_free[machine]).astype(np.float32)
    load = state.machine_load[machine].astype(np.float32)
    return idle, load


def job_features(state: ShopState, scales: FeatureScales, rows: int) -> FloatArray:
    """(rows, N_FEATURES) table; jobs beyond the instance and finished jobs are zero rows."""
    cp = state.cp
    table = np.zeros((rows, N_FEATURES), dtype=np.float32)
    jobs = np.flatnonzero(state.active)
    if jobs.size == 0:
        return table
    ops = state.next_op[jobs]
    last = state.end_op[jobs]
    total_ops = (cp.job_op_start[jobs + 1] - cp.job_op_start[jobs]).astype(np.float32)
    ops_left = (last - ops).astype(np.float32)
    work_left = cp.work_from[ops].astype(np.float32)
    duration = cp.op_min_duration[ops].astype(np.float32)
    has_next = ops + 1 < last
    next_duration = np.where(has_next, cp.op_min_duration[np.minimum(ops + 1, cp.n_ops - 1)], 0)
    candidate = state.candidates[jobs]
    idle, load = _machine_columns(state, jobs)
    cand_work = work_left[candidate].max(initial=1.0)
    cand_ops = ops_left[candidate].max(initial=1.0)
    cand_dur = duration[candidate].min(initial=1.0)
    due = cp.due_date[jobs]
    slack = np.where(np.isfinite(due), (due - state.t_star - work_left) / scales.work, 0.0)

    d, w = scales.duration, scales.work
    table[jobs] = np.stack(
        [
            np.ones_like(duration),
            candidate.astype(np.float32),
            (state.est[jobs] - state.t_star) / d,
            duration / d,
            next_duration / d,
            work_left / w,
            ops_left / scales.ops,
            1.0 - ops_left / np.maximum(total_ops, 1.0),
            idle / d,
            load / w,
            work_left / max(cand_work, 1.0),
            ops_left / max(cand_ops, 1.0),
            cand_dur / np.maximum(duration, 1.0),
            (state.t_star - state.job_ready[jobs]) / d,
            np.clip(slack, -5.0, 5.0),
            cp.priority[jobs] / 3.0,
            np.full_like(duration, state.scheduled / max(cp.n_ops, 1)),
            np.full_like(duration, state.t_star / scales.horizon),
        ],
        axis=1,
    ).clip(-FEATURE_BOUND, FEATURE_BOUND)
    return table
