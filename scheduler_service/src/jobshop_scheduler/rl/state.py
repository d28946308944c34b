"""Step-by-step non-delay dispatching state, vectorised over jobs for the RL environment.

Same semantics as `heuristics.dispatch` (which is a heap-based single pass for rules): at each
step t* is the earliest time any job's next operation can start, the candidates are every job
whose next operation can start at t*, and the chosen operation goes on an eligible machine
free at t* (shortest duration, then lowest index). A test checks that driving this state with
a rule's choice reproduces `dispatch` exactly.

Scheduling only ever appends after a machine's last operation, so `machine_free + remaining
single-machine load` and `job_ready + remaining work` are lower bounds of the final makespan;
their maximum (`lower_bound`) reaches the makespan when the last operation is placed, which makes
its per-step increase a dense reward whose episode sum is minus the makespan plus a constant.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
NO_MACHINE = np.iinfo(np.int64).max // 4


class ShopState:
    """Mutable dispatching state over one compiled problem."""

    def __init__(self, cp: CompiledProblem) -> None:
        self.cp = cp
        self.next_op: IntArray = cp.job_op_start[:-1].copy()
        self.end_op: IntArray = cp.job_op_start[1:]
        self.job_ready: IntArray = cp.release_time.astype(np.int64).copy()
        self.machine_free: IntArray = np.zeros(cp.n_machines, dtype=np.int64)
        self.op_machine: IntArray = np.full(cp.n_ops, -1, dtype=np.int64)
        self.op_start: IntArray = np.full(cp.n_ops, -1, dtype=np.int64)
        self.scheduled = 0
        self.makespan = 0
        # Load each machine must still carry: operations that have no other eligible machine.
        single = cp.eligible.sum(axis=1) == 1
        self._single_machine = np.where(single, cp.eligible.argmax(axis=1), -1)
        self.machine_load: IntArray = np.bincount(
            self._single_machine[single],
            weights=cp.op_min_duration[single],
            minlength=cp.n_machines,
        ).astype(np.int64)
        self._refresh()

    @property
    def done(self) -> bool:
        return self.scheduled == self.cp.n_ops

    def _refresh(self) -> None:
        """Recompute per-job earliest starts, t* and the candidate mask."""
        cp = self.cp
        self.active: BoolArray = self.next_op < self.end_op
        ops = np.minimum(self.next_op, cp.n_ops - 1) if cp.n_ops else self.next_op
        free = np.where(cp.eligible[ops], self.machine_free[None, :], NO_MACHINE).min(axis=1)
        est = np.maximum(self.job_ready, free)
        self.est: IntArray = np.where(self.active, est, NO_MACHINE)
        self.t_star = int(self.est.min()) if self.active.any() else self.makespan
        self.candidates: BoolArray = self.active & (self.est == self.t_star)

    def lower_bound(self) -> int:
        cp = self.cp
        jobs = self.job_ready + np.where(
            self.active, cp.work_from[np.minimum(self.next_op, max(cp.n_ops - 1, 0))], 0
        )
        machines = self.machine_free + self.machine_load
        return int(max(self.makespan, jobs.max(initial=0), machines.max(initial=0)))

    def machine_for(self, job: int) -> tuple[int, int]:
        """(machine, duration) the job's next operation takes if dispatched now."""
        op = int(self.next_op[job])
        start = int(self.est[job])
        return min(
            ((k, p) for k, p in self.cp.alternatives[op] if self.machine_free[k] <= start),
            key=lambda kp: (kp[1], kp[0]),
        )

    def dispatch(self, job: int) -> None:
        """Place the next operation of a candidate job at t*."""
        if not (0 <= job < self.cp.n_jobs and self.candidates[job]):
            raise ValueError(f"job index {job} is not a candidate at t*={self.t_star}")
        op = int(self.next_op[job])
        machine, duration = self.machine_for(job)
        start = self.t_star
        end = start + duration
        self.op_machine[op], self.op_start[op] = machine, start
        self.machine_free[machine] = self.job_ready[job] = end
        if self._single_machine[op] >= 0:
            self.machine_load[machine] -= int(self.cp.op_min_duration[op])
        self.next_op[job] = op + 1
        self.scheduled += 1
        self.makespan = max(self.makespan, end)
        self._refresh()
