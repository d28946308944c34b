"""A lower bound of the makespan, to report with every answer and to stop a search that met it.

Three valid bounds, the largest wins: a job cannot end before its release plus the shortest
durations of all its operations; a machine cannot end before it is ready plus the work that
only it can do; and the shop as a whole has at most one operation per machine at a time, so
the makespan is at least the machines' ready times plus all the shortest durations, spread over
the machines. On the classic Taillard sets the first two are the textbook trivial bound.
"""

from __future__ import annotations

import numpy as np

from jobshop_scheduler.heuristics.compiled import CompiledProblem


def lower_bound(cp: CompiledProblem) -> int:
    """The largest of the job, machine and shop bounds (module docstring); 0 without work."""
    if cp.n_ops == 0:
        return 0
    jobs = cp.release_time + cp.job_total_work()
    single = cp.eligible.sum(axis=1) == 1
    only = np.bincount(
        cp.eligible[single].argmax(axis=1),
        weights=cp.op_min_duration[single],
        minlength=cp.n_machines,
    )
    machines = cp.machine_ready + only
    # Each machine contributes its idle time before it is ready, before the work is spread.
    shop = (int(cp.machine_ready.sum()) + int(cp.op_min_duration.sum())) / cp.n_machines
    return int(max(int(jobs.max()), int(machines.max()), int(np.ceil(shop))))
