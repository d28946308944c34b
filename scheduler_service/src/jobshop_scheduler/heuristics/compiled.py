"""A Problem compiled once into index-based arrays, shared by heuristics, the RL env and policy.

The domain model speaks in string ids and nested tuples, which is right for the API and the
validator but slow in inner loops. Here every machine, job and operation gets a dense integer
index: operations are numbered globally, job by job, so job j owns the half-open range
``job_op_start[j]:job_op_start[j + 1]`` (CSR layout) and its k-th operation is
``job_op_start[j] + k``. Arrays are read-only so one compiled problem can be shared safely.

Flexible operations have several (machine, duration) alternatives. Quantities that need one
duration per operation ("work remaining") use the shortest alternative, which keeps them exact
for the classic job shop and a lower bound otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.domain.model import Assignment, Problem, Schedule

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
_A = TypeVar("_A", bound="np.ndarray[Any, Any]")


def _frozen(array: _A) -> _A:
    """Mark an array read-only: compiled problems are shared between callers."""
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class CompiledProblem:
    """Index-based, read-only view of a Problem (see the module docstring for the layout)."""

    machine_ids: tuple[str, ...]
    job_ids: tuple[str, ...]
    op_ids: tuple[str, ...]
    machine_index: dict[str, int]
    # Per job (length n_jobs, except job_op_start which has n_jobs + 1 entries).
    job_op_start: IntArray
    release_time: IntArray
    due_date: FloatArray  # +inf where the job has no due date, so "earliest due" sorts it last
    priority: IntArray
    # Per operation (length n_ops).
    op_job: IntArray
    op_position: IntArray  # index of the operation within its job
    # ((machine index, duration), ...) per operation, sorted by machine index.
    alternatives: tuple[tuple[tuple[int, int], ...], ...]
    duration_matrix: IntArray  # (n_ops, n_machines), 0 where the machine is not eligible
    eligible: BoolArray  # (n_ops, n_machines)
    # `alternatives` as arrays (CSR): operation o's machines, in index order, and durations are
    # alt_machine[alt_ptr[o]:alt_ptr[o + 1]] and alt_duration[...] (the compiled dispatcher's)
    alt_ptr: IntArray
    alt_machine: IntArray
    alt_duration: IntArray
    op_min_duration: IntArray
    op_mean_duration: FloatArray
    work_from: IntArray  # min-duration work of this operation and all later ones of its job
    # Per machine: when it becomes available (0, or the end of an earlier batch's work on it).
    machine_ready: IntArray
    request_id: str = ""

    @property
    def n_jobs(self) -> int:
        return len(self.job_ids)

    @property
    def n_machines(self) -> int:
        return len(self.machine_ids)

    @property
    def n_ops(self) -> int:
        return len(self.op_ids)

    @property
    def job_n_ops(self) -> IntArray:
        """Number of operations of every job."""
        return np.diff(self.job_op_start)

    @property
    def is_classic(self) -> bool:
        """True when every operation has exactly one eligible machine (no routing choice)."""
        return all(len(alts) == 1 for alts in self.alternatives)

    def op_index(self, job: int, position: int) -> int:
        """Global index of the position-th operation of a job."""
        return int(self.job_op_start[job]) + position

    def ops_remaining(self, job: int, next_position: int) -> int:
        """Operations of a job still to schedule, counting the next one."""
        return int(self.job_op_start[job + 1] - self.job_op_start[job]) - next_position

    def remaining_work(self, job: int, next_position: int) -> int:
        """Min-duration work still to do in a job, counting the next operation; 0 when done."""
        op = int(self.job_op_start[job]) + next_position
        if op >= self.job_op_start[job + 1]:
            return 0
        return int(self.work_from[op])

    def job_total_work(self) -> IntArray:
        """Min-duration work of every job (0 for a job without operations)."""
        totals = np.zeros(self.n_jobs, dtype=np.int64)
        has_ops = self.job_n_ops > 0
        totals[has_ops] = self.work_from[self.job_op_start[:-1][has_ops]]
        return totals

    def horizon(self) -> int:
        """A makespan no sensible schedule exceeds: latest release plus all longest durations.

        Useful to normalise times (RL observations) and to size arrays.
        """
        longest = int(self.duration_matrix.max(axis=1).sum()) if self.n_ops else 0
        latest_release = int(self.release_time.max()) if self.n_jobs else 0
        return latest_release + longest

    def to_schedule(
        self, op_machine: Sequence[int] | np.ndarray, op_start: Sequence[int] | np.ndarray
    ) -> Schedule:
        """Turn per-operation machine indices and start times back into domain Assignments."""
        machine_ids, op_ids, job_ids = self.machine_ids, self.op_ids, self.job_ids
        job_of = self.op_job.tolist()
        assignments = []
        for op, (k, start) in enumerate(zip(op_machine, op_start, strict=True)):
            duration = dict(self.alternatives[op]).get(int(k))
            if duration is None:
                raise ValueError(f"operation {op_ids[op]} is not eligible on machine index {k}")
            begin = int(start)
            assignments.append(
                Assignment(job_ids[job_of[op]], op_ids[op], machine_ids[k], begin, begin + duration)
            )
        return Schedule(tuple(assignments))

    def arrays_of(self, schedule: Schedule) -> tuple[IntArray, IntArray]:
        """The inverse of `to_schedule`: machine index and start per global operation.

        Every operation must be in the schedule once (a complete plan, as the planner's).
        """
        index = {(self.job_ids[self.op_job[op]], op_id): op for op, op_id in enumerate(self.op_ids)}
        op_machine = np.full(self.n_ops, -1, dtype=np.int64)
        op_start = np.zeros(self.n_ops, dtype=np.int64)
        for a in schedule.assignments:
            op = index[(a.job_id, a.operation_id)]
            op_machine[op] = self.machine_index[a.machine_id]
            op_start[op] = a.start
        if (op_machine < 0).any():
            raise ValueError("the schedule does not place every operation")
        return op_machine, op_start


def _check_machines(problem: Problem) -> dict[str, int]:
    index = {machine: k for k, machine in enumerate(problem.machines)}
    if len(index) != len(problem.machines):
        raise ValueError("machine ids must be unique")
    return index


def _compile_alternatives(
    problem: Problem, machine_index: dict[str, int]
) -> list[tuple[tuple[int, int], ...]]:
    """Per-operation (machine index, duration) pairs, rejecting what no schedule could use."""
    compiled: list[tuple[tuple[int, int], ...]] = []
    for job in problem.jobs:
        for operation in job.operations:
            if not operation.alternatives:
                raise ValueError(f"operation {operation.id} has no eligible machine")
            pairs: list[tuple[int, int]] = []
            for alt in operation.alternatives:
                if alt.machine_id not in machine_index:
                    raise ValueError(f"operation {operation.id}: unknown machine {alt.machine_id}")
                if alt.duration < 0:
                    raise ValueError(f"operation {operation.id}: negative duration")
                pairs.append((machine_index[alt.machine_id], alt.duration))
            if len({k for k, _ in pairs}) != len(pairs):
                raise ValueError(f"operation {operation.id} lists a machine twice")
            compiled.append(tuple(sorted(pairs)))  # by machine index: deterministic ties
    return compiled


def _suffix_work(op_min: IntArray, job_op_start: IntArray) -> IntArray:
    """Per operation: its min duration plus those of all later operations of the same job."""
    total = np.cumsum(op_min[::-1])[::-1]  # suffix sums over the whole array
    job_end = np.repeat(job_op_start[1:], np.diff(job_op_start))
    after_job = np.append(total, 0)[job_end]  # suffix sum starting at the next job
    return np.asarray(total - after_job, dtype=np.int64)


def _machine_ready(problem: Problem, ready: Mapping[str, int]) -> IntArray:
    unknown = set(ready) - set(problem.machines)
    if unknown:
        raise ValueError(f"machine_ready names unknown machines: {sorted(unknown)}")
    return np.array([max(int(ready.get(m, 0)), 0) for m in problem.machines], dtype=np.int64)


def compile_problem(
    problem: Problem, machine_ready: Mapping[str, int] | None = None
) -> CompiledProblem:
    """Build the array form once; raise ValueError for ids or durations that cannot be scheduled.

    `machine_ready` (machine id -> time) holds machines busy until then, as when a machine is
    still busy with earlier work.
    """
    machine_index = _check_machines(problem)
    alternatives = _compile_alternatives(problem, machine_index)
    ops_per_job = [len(job.operations) for job in problem.jobs]
    job_op_start = np.concatenate(([0], np.cumsum(ops_per_job, dtype=np.int64))).astype(np.int64)
    n_ops, n_machines = len(alternatives), len(problem.machines)
    # the alternatives as CSR arrays, then every table from them without a Python loop per cell
    counts = np.array([len(a) for a in alternatives], dtype=np.int64)
    alt_ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    alt_machine = np.array([k for a in alternatives for k, _ in a], dtype=np.int64)
    alt_duration = np.array([p for a in alternatives for _, p in a], dtype=np.int64)
    alt_op = np.repeat(np.arange(n_ops, dtype=np.int64), counts)

    durations = np.zeros((n_ops, n_machines), dtype=np.int64)
    eligible = np.zeros((n_ops, n_machines), dtype=np.bool_)
    durations[alt_op, alt_machine] = alt_duration
    eligible[alt_op, alt_machine] = True
    starts = alt_ptr[:-1]  # every operation has an alternative (_compile_alternatives)
    op_min = np.minimum.reduceat(alt_duration, starts) if n_ops else np.zeros(0, np.int64)
    sums = np.add.reduceat(alt_duration, starts) if n_ops else np.zeros(0, np.int64)
    op_mean = sums / counts  # float64
    op_job = np.repeat(np.arange(len(problem.jobs), dtype=np.int64), ops_per_job)
    due = [np.inf if job.due_date is None else float(job.due_date) for job in problem.jobs]

    return CompiledProblem(
        machine_ids=tuple(problem.machines),
        job_ids=tuple(job.id for job in problem.jobs),
        op_ids=tuple(op.id for job in problem.jobs for op in job.operations),
        machine_index=machine_index,
        job_op_start=_frozen(job_op_start),
        release_time=_frozen(np.array([j.release_time for j in problem.jobs], dtype=np.int64)),
        due_date=_frozen(np.array(due, dtype=np.float64)),
        priority=_frozen(np.array([j.priority for j in problem.jobs], dtype=np.int64)),
        op_job=_frozen(op_job),
        op_position=_frozen(np.arange(n_ops, dtype=np.int64) - job_op_start[op_job]),
        alternatives=tuple(alternatives),
        duration_matrix=_frozen(durations),
        eligible=_frozen(eligible),
        alt_ptr=_frozen(alt_ptr),
        alt_machine=_frozen(alt_machine),
        alt_duration=_frozen(alt_duration),
        op_min_duration=_frozen(op_min),
        op_mean_duration=_frozen(op_mean),
        work_from=_frozen(_suffix_work(op_min, job_op_start)),
        machine_ready=_frozen(_machine_ready(problem, machine_ready or {})),
        request_id=problem.request_id,
    )
