"""A lower bound of the makespan, to report with every answer and to stop a search that met it.

Three valid bounds, the largest wins: a job cannot end before its release plus the shortest
durations of all its operations; a machine with work that only it can do cannot end before it
is ready plus that work; and the shop as a whole has at most one operation per machine at a
time, so the makespan is at least the time by which the machines, each from when it is ready,
can have done all the shortest durations between them. A machine busy until some time but
given no work bounds nothing, so neither of the last two counts it for more than it can do.
On the classic Taillard sets the first two are the textbook trivial bound.
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
    machines = np.where(only > 0, cp.machine_ready + only, 0)
    shop = _spread(cp.machine_ready, int(cp.op_min_duration.sum()))
    return int(max(int(jobs.max()), int(machines.max()), shop))


def _spread(ready: np.ndarray, work: int) -> int:
    """The earliest time by which machines free from ``ready`` on can have done ``work``
    between them: filled from the earliest ready, a machine ready later than that time adds
    nothing."""
    times = sorted(int(t) for t in ready)  # integers: exact, where a float might round up
    total = work
    for used, time in enumerate(times, start=1):
        total += time
        if used == len(times) or total <= times[used] * used:
            return -(-total // used)
    return 0
