"""Size-agnostic per-job features: one row per job, the same columns for 15 or 170 jobs.

Every quantity is scaled by instance statistics (mean operation duration, mean job work), and
the rank-like columns compare a job with the other candidates, so one scorer can weigh the
signals the legacy rules use (remaining work, operations left, duration) against machine
contention and waiting times on any instance size.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.rl import kernels
from jobshop_scheduler.rl.state import ShopState, routing_alike

FloatArray = NDArray[np.float32]
FEATURE_BOUND = kernels.FEATURE_BOUND
_NO_ROWS = np.zeros(0, dtype=np.int64)

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
    # Flexible operations: what dispatching now costs. The operation takes the machine free at
    # its earliest start, which may be slower than its fastest one; on a loaded flexible shop
    # that extra time is most of the makespan's excess over the work bound. All three are 0 on
    # a classic shop, so weights on them cannot change a policy's classic decisions.
    "slowdown",  # (duration on that machine - min duration) / mean duration; 0 in a classic shop
    "speed_loss",  # 1 - min duration / duration on that machine; 0 in a classic shop
    "fast_wait",  # (start on a fastest eligible machine - earliest start) / mean duration
    # The scorer a state belongs to: the window when the candidates are the active-schedule set
    # (`state.dispatch_window`), scored by a model's window scorer (or, narrower than the
    # model's own window, by its alike shops' scorer); -1 on a long classic shop of a model with
    # a long-shop scorer (`state.LONG_SHOP`); 0 otherwise (non-delay, first scorer). The scorers
    # themselves read its sign (`scorer_view`): it routes, it does not inform.
    "window",
    # Where the job goes next, on classic shops (all 0 on flexible ones, so weights on them
    # cannot change a flexible shop's plan): what binds a shop with one slow machine or one
    # shared route is the machine a job meets after this one, not the one it is about to take
    "next_machine_wait",  # (that machine's free time - this operation's end) / mean duration
    "next_machine_load",  # that machine's remaining load / mean job work
    "next_machine_share",  # that load / the most loaded machine's: 1 on the bottleneck
    "routing_alike",  # `state.routing_alike`, floored at 1e-6 on a classic shop; 0 on flexible
)
N_FEATURES = len(FEATURES)
WINDOW_COLUMN = FEATURES.index("window")


def scorer_view(table: FloatArray) -> FloatArray:
    """``table`` as the scorers read it: the `window` column's sign, 1 on every windowed
    state, as it was before the column held the window (a copy where that changes it)."""
    column = table[..., WINDOW_COLUMN]
    sign = np.sign(column)
    if np.array_equal(column, sign):
        return table
    view = table.copy()
    view[..., WINDOW_COLUMN] = sign
    return view


if N_FEATURES != kernels.N_COLUMNS:
    raise ImportError(f"{N_FEATURES} feature names for {kernels.N_COLUMNS} computed columns")


class FeatureScales:
    """Per-instance normalisers, computed once per episode."""

    def __init__(self, state: ShopState) -> None:
        cp = state.cp
        self.duration = float(max(cp.op_min_duration.mean(), 1.0)) if cp.n_ops else 1.0
        self.ops = float(max(cp.job_n_ops.mean(), 1.0)) if cp.n_jobs else 1.0
        self.work = self.duration * self.ops
        self.horizon = float(max(state.lower_bound(), 1))
        # above 0 on every classic shop, so the kernel can tell them from flexible ones
        self.alike = max(routing_alike(cp), 1e-6) if cp.is_classic else 0.0


def fill_features(
    state: ShopState,
    scales: FeatureScales,
    out: FloatArray,
    candidate_rows: NDArray[np.int64] | None = None,
) -> int:
    """Write the table into `out` in place; return its row count.

    Without `candidate_rows`: row j is job j, finished jobs as zero rows (the environment's
    observation). With it: only active jobs, compacted, and their candidates' rows filled in.
    """
    cp = state.cp
    compact = candidate_rows is not None
    rows = kernels.features(
        state.next_op, state.end_op, cp.job_op_start, state.job_ready, state.est, state.active,
        state.candidates, state.machine_free, state.machine_load, cp.eligible, cp.duration_matrix,
        cp.op_min_duration, cp.work_from, cp.due_date, cp.priority, state.t_star,
        state.scheduled / max(cp.n_ops, 1), scales.duration, scales.ops, scales.work,
        scales.horizon, state.window, state.single_machine, scales.alike, out, compact,
        _NO_ROWS if candidate_rows is None else candidate_rows,
    )  # fmt: skip
    return int(rows)


def job_features(state: ShopState, scales: FeatureScales, rows: int) -> FloatArray:
    """(rows, N_FEATURES) table; jobs beyond the instance and finished jobs are zero rows."""
    if rows < state.cp.n_jobs:  # the compiled kernel writes one row per job, unchecked
        raise ValueError(f"a table of {rows} rows cannot hold {state.cp.n_jobs} jobs")
    table = np.zeros((rows, N_FEATURES), dtype=np.float32)
    fill_features(state, scales, table)
    return table
