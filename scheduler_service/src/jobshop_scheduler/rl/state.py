"""Step-by-step dispatching state, vectorised over jobs for the RL environment.

With `window` 0 (non-delay), the semantics of `heuristics.dispatch` (a heap-based single pass
for rules): at each step t* is the earliest time any job's next operation can start, the
candidates are every job whose next operation can start at t*, and the chosen operation goes
on an eligible machine free at t* (shortest duration, then lowest index). A test checks that
driving this state with a rule's choice reproduces `dispatch` exactly. With `window` above 0
the candidates are the Giffler-Thompson conflict set (`kernels.refresh`) and the chosen
operation starts at its own earliest start, which may leave its machine idle until then.

Scheduling only ever appends after a machine's last operation, so `machine_free + remaining
single-machine load` and `job_ready + remaining work` are lower bounds of the final makespan;
their maximum (`lower_bound`) reaches the makespan when the last operation is placed, which makes
its per-step increase a dense reward whose episode sum is minus the makespan plus a constant.
`work_bound` adds the shop-wide one: no operation starts before t* or before its machine is
free, so the makespan is at least (sum over machines of max(free, t*) + remaining min-duration
work) / machines. On a loaded flexible shop it is the binding one, and it charges an operation
put on a slower machine with the extra time at the step that does it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.heuristics.dispatch import complete as complete_by_rule
from jobshop_scheduler.heuristics.dispatch import makespan_of
from jobshop_scheduler.rl import kernels

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# The scheme of a long classic shop under a model with a long-shop scorer: dispatched non-delay
# (every window at or below 0 is), its states scored by that scorer (`policy.JobScorer`).
LONG_SHOP = -1.0


def routing_alike(cp: CompiledProblem) -> float:
    """How alike the jobs' routes are: the share of the spread of the operations' places in
    their routes (position in the job, scaled into (0, 1)) that their machines explain.

    1 in a flow shop, where each machine has one place; about 0.75 in DMU's two-set shops, whose
    jobs visit one half of the machines before the other; about 0 when every route is a random
    order (Taillard's shops). 0 on a flexible shop, where an operation's machine is not fixed.
    """
    if not cp.is_classic or cp.n_ops == 0:
        return 0.0
    place = (cp.op_position + 0.5) / cp.job_n_ops[cp.op_job]
    spread = float(place.var())
    if spread <= 0.0:
        return 0.0
    machine = np.argmax(cp.eligible, axis=1)
    count = np.bincount(machine, minlength=cp.n_machines).astype(np.float64)
    total = np.bincount(machine, place, cp.n_machines)
    squares = np.bincount(machine, place * place, cp.n_machines)
    within = float((squares - total * total / np.maximum(count, 1.0)).sum()) / cp.n_ops
    return float(np.clip(1.0 - within / spread, 0.0, 1.0))


def dispatch_window(
    cp: CompiledProblem,
    window: float,
    max_ratio: float,
    long_scorer: bool = False,
    alike: float = 0.0,
    *,
    narrowing: float = 0.0,
    widening: float = 0.0,
    flexible: float = 0.0,
    flexible_ops: float = 0.0,
) -> float:
    """The window a policy trained with (`window`, `max_ratio`) dispatches ``cp`` with.

    Its own window on classic shops with at most `max_ratio` jobs per machine (0: on every
    classic shop); non-delay on longer shops and on flexible ones (but see `flexible`). On long
    shops the machines are the bottleneck and the best non-delay plan is close to the best
    plan, so the wider choice only adds ways to leave a machine idle. A model
    with a long-shop scorer (`long_scorer`) dispatches the longer classic shops non-delay too,
    but marks them `LONG_SHOP` so that scorer, not the flexible shops' one, chooses there.

    With `alike` above 0, a long classic shop whose routes are at least that alike
    (`routing_alike`) gets the window all the same: when the jobs meet the machines in much the
    same order, as in DMU's two-set shops and near flow shops, the machines are not what binds,
    and waiting for the right job pays there as it does on square shops. The longer such a shop
    is, the more its machines bind all the same: with `narrowing` above 0 its window is
    ``window * (max_ratio / jobs per machine) ** narrowing``, narrower the longer the shop.

    With `widening` above 0 the same rule runs the other way on the shorter shops: a shop with
    fewer jobs per machine than `max_ratio` gets ``window * (max_ratio / jobs per machine) **
    widening``, at most 1 (all active schedules). The fewer jobs a machine sees, the less its
    queue binds and the more a plan gains from waiting for the job that matters.

    With `flexible` above 0, a flexible shop with at most that many jobs per machine gets the
    window too, widened by the same rule: ``window * (flexible / jobs per machine) **
    widening``, at most 1, chosen by the window scorer. The active-schedule set of a flexible
    shop is built from one machine per job, which the routing choice makes a poor guide on a
    loaded shop (1-4 % longer plans at 80-170 jobs on 10-20 machines); with few jobs per
    machine the jobs' own chains bind, and waiting for the right job pays there as on square
    shops (6-7 % shorter at 10-25 jobs: docs/benchmark.md, "Small flexible shops").

    With `flexible_ops` above 0, a flexible shop with more jobs per machine than that but at
    most `flexible_ops` operations per machine gets the model's own window. Jobs per machine
    measure a machine's queue only for routes as long as the production-like shops' (10-20
    operations): where jobs have one to a few operations, a machine's queue is short at any
    number of jobs, and the window pays there as on the small shops (docs/benchmark.md,
    "Short routes").
    """
    if window <= 0.0:
        return 0.0
    if not cp.is_classic:
        return _flexible_window(cp, window, widening, flexible, flexible_ops)
    if max_ratio > 0.0 and cp.n_jobs > max_ratio * cp.n_machines:
        if alike > 0.0 and routing_alike(cp) >= alike:
            return _scaled(cp, window, max_ratio, narrowing)
        return LONG_SHOP if long_scorer else 0.0
    if widening > 0.0 and max_ratio > 0.0 and cp.n_jobs > 0:
        return _scaled(cp, window, max_ratio, widening)
    return window


def _flexible_window(
    cp: CompiledProblem, window: float, widening: float, flexible: float, flexible_ops: float
) -> float:
    """`dispatch_window` on a flexible shop: widened where machines see few jobs, the window
    itself where they see few operations, non-delay otherwise."""
    if 0 < cp.n_jobs <= flexible * cp.n_machines:
        return _scaled(cp, window, flexible, widening)
    return window if 0 < cp.n_ops <= flexible_ops * cp.n_machines else 0.0


def _scaled(cp: CompiledProblem, window: float, ratio: float, power: float) -> float:
    """``window * (ratio / jobs per machine) ** power``, at most 1: narrower on shops with more
    jobs per machine than ``ratio``, wider on those with fewer."""
    return min(1.0, window * float((ratio * cp.n_machines / cp.n_jobs) ** power))


@dataclass(frozen=True)
class DispatchScheme:
    """The settings a model was trained to dispatch with (`dispatch_window`); a model's
    choices mean something only among the candidates of its own scheme."""

    window: float = 0.0
    ratio: float = 0.0
    long_scorer: bool = False
    alike: float = 0.0
    narrowing: float = 0.0
    widening: float = 0.0
    # a fourth scorer for the long alike shops, those dispatched with a window narrower than
    # `window` (`is_alike_window`); needs `alike` and `narrowing` above 0
    alike_scorer: bool = False
    # flexible shops with at most this many jobs per machine get the window (0: none do)
    flexible: float = 0.0
    # and those with at most this many operations per machine (0: none do)
    flexible_ops: float = 0.0

    # the model's buffer (`policy.JobScorer`) and constructor argument of each float setting
    BUFFERS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("window", "window"),
        ("ratio", "window_ratio"),
        ("alike", "window_alike"),
        ("narrowing", "window_narrowing"),
        ("widening", "window_widening"),
        ("flexible", "window_flexible"),
        ("flexible_ops", "window_flexible_ops"),
    )

    @classmethod
    def from_buffers(
        cls, get: Callable[[str], float], long_scorer: bool, alike_scorer: bool = False
    ) -> DispatchScheme:
        """From a model's buffers, read by name (0 for a buffer an older model lacks)."""
        values = {field: float(get(buffer)) for field, buffer in cls.BUFFERS}
        return cls(long_scorer=long_scorer, alike_scorer=alike_scorer, **values)

    def is_alike_window(self, window: float) -> bool:
        """Whether a shop dispatched with ``window`` is a long alike one: narrowed below the
        model's own window. Compared in float32, as the feature table and the buffers hold it."""
        return bool(0.0 < np.float32(window) < np.float32(self.window))

    def model_arguments(self) -> dict[str, Any]:
        """The model's constructor arguments (`policy.JobScorerPolicy`), those set only: zips
        written before an argument existed load with its default."""
        arguments: dict[str, Any] = {
            buffer: getattr(self, field) for field, buffer in self.BUFFERS if getattr(self, field)
        }
        if self.long_scorer:
            arguments["long_shops"] = True
        if self.alike_scorer:
            arguments["alike_shops"] = True
        return arguments

    def window_for(self, cp: CompiledProblem) -> float:
        """The window (or `LONG_SHOP`) a model with this scheme dispatches ``cp`` with."""
        return dispatch_window(
            cp, self.window, self.ratio, self.long_scorer, self.alike,
            narrowing=self.narrowing, widening=self.widening, flexible=self.flexible,
            flexible_ops=self.flexible_ops,
        )  # fmt: skip


# the arrays `ShopState.dispatch` writes to (`ShopState.copy`)
_MUTABLE = ("next_op", "end_op", "job_ready", "machine_free", "op_machine", "op_start",
            "machine_load", "est", "active", "candidates")  # fmt: skip


def admission_order(cp: CompiledProblem) -> IntArray:
    """The order in which a horizon admits jobs (`ShopState`): by release time, then due date
    (none last), then the request's order, as batches were cut before the horizon: earlier
    work goes first, and no waiting job was released before an admitted one."""
    return np.lexsort((np.arange(cp.n_jobs), cp.due_date, cp.release_time)).astype(np.int64)


class ShopState:
    """Mutable dispatching state over one compiled problem.

    With a `horizon` below the job count, at most that many unfinished jobs are open at once,
    in `admission_order`; the next is admitted when one finishes. A job not yet admitted is
    inactive (its `end_op` is its first operation), so a policy scores at most `horizon` rows
    per step, the size it was built for, while every job shares one timeline: unlike batches
    scheduled one after another, no machine waits for a batch border.
    """

    def __init__(self, cp: CompiledProblem, window: float = 0.0, horizon: int = 0) -> None:
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0 (0: every job at once), got {horizon}")
        self.cp = cp
        # above 0: `kernels.refresh`'s active-schedule set; 0: non-delay; `LONG_SHOP`: non-delay,
        # scored by a long-shop scorer
        self.window = window
        self.next_op: IntArray = cp.job_op_start[:-1].copy()
        self.end_op: IntArray = cp.job_op_start[1:].copy()
        self.horizon = horizon if 0 < horizon < cp.n_jobs else 0
        self._waiting = admission_order(cp) if self.horizon else np.empty(0, np.int64)
        self._admitted = 0  # how many of `_waiting` are in
        self._open = 0  # admitted jobs with operations left
        if self.horizon:
            self.end_op[self._waiting] = self.next_op[self._waiting]
            self._admit()
        self.job_ready: IntArray = cp.release_time.astype(np.int64).copy()
        self.machine_free: IntArray = cp.machine_ready.copy()
        self.op_machine: IntArray = np.full(cp.n_ops, -1, dtype=np.int64)
        self.op_start: IntArray = np.full(cp.n_ops, -1, dtype=np.int64)
        self.scheduled = 0
        self.work_left = int(cp.op_min_duration.sum())  # min-duration work not yet placed
        self.makespan = 0
        self.rule_operations = 0  # operations a rule placed to finish the pass (`complete`)
        # Load each machine must still carry: operations that have no other eligible machine.
        single = cp.eligible.sum(axis=1) == 1
        self.single_machine = np.where(single, cp.eligible.argmax(axis=1), -1)
        self.machine_load: IntArray = np.bincount(
            self.single_machine[single],
            weights=cp.op_min_duration[single],
            minlength=cp.n_machines,
        ).astype(np.int64)
        self.est: IntArray = np.empty(cp.n_jobs, dtype=np.int64)
        self.active: BoolArray = np.empty(cp.n_jobs, dtype=np.bool_)
        self.candidates: BoolArray = np.empty(cp.n_jobs, dtype=np.bool_)
        self._refresh()

    def copy(self) -> ShopState:
        """An independent state at the same point: the arrays dispatching changes are copied,
        the problem and the fixed arrays shared (a rollout from here leaves this one as it is)."""
        twin = copy.copy(self)
        for name in _MUTABLE:
            setattr(twin, name, getattr(self, name).copy())
        return twin

    def decisions(self) -> Iterator[IntArray]:
        """The candidates of each state with a choice to make, until the plan is done; a state
        with one candidate is dispatched here. The caller dispatches one before asking again."""
        while not self.done:
            candidates = np.flatnonzero(self.candidates)
            if len(candidates) == 1:
                self.dispatch(int(candidates[0]))
            else:
                yield candidates

    @property
    def done(self) -> bool:
        return self.scheduled == self.cp.n_ops

    def _admit(self) -> None:
        """Open waiting jobs, in order, until `horizon` are open or none waits."""
        ends = self.cp.job_op_start[1:]
        while self._open < self.horizon and self._admitted < len(self._waiting):
            job = self._waiting[self._admitted]
            self._admitted += 1
            self.end_op[job] = ends[job]
            self._open += int(self.next_op[job] < ends[job])

    def _refresh(self) -> None:
        """Recompute per-job earliest starts, t* and the candidate mask."""
        self.t_star = int(
            kernels.refresh(
                self.next_op, self.end_op, self.job_ready, self.machine_free, self.cp.eligible,
                self.makespan, self.est, self.active, self.candidates, self.cp.duration_matrix,
                self.window,
            )
        )  # fmt: skip

    def lower_bound(self) -> int:
        cp = self.cp
        unfinished = self.next_op < cp.job_op_start[1:]  # admitted or not
        jobs = self.job_ready + np.where(
            unfinished, cp.work_from[np.minimum(self.next_op, max(cp.n_ops - 1, 0))], 0
        )
        machines = self.machine_free + self.machine_load
        return int(max(self.makespan, jobs.max(initial=0), machines.max(initial=0)))

    def work_bound(self) -> float:
        """Shop-wide lower bound of the makespan (module docstring); the makespan once done."""
        busy = np.maximum(self.machine_free, self.t_star).sum()
        return float(busy + self.work_left) / max(self.cp.n_machines, 1)

    def machine_for(self, job: int) -> tuple[int, int]:
        """(machine, duration) the job's next operation takes if dispatched now."""
        op = int(self.next_op[job])
        cp = self.cp
        machine = int(
            kernels.machine_for(
                op, self.est[job], self.machine_free, cp.duration_matrix, cp.eligible
            )
        )
        return machine, int(cp.duration_matrix[op, machine])

    def complete(self, rule: str) -> None:
        """Place every operation left by a dispatching rule (`heuristics.dispatch.complete`),
        after the ones placed so far: how a pass that ran out of time ends at a rule's cost.
        Every job is placed, admitted or not; `rule_operations` counts what the rule placed."""
        cp = self.cp
        complete_by_rule(
            cp, rule, next_op=self.next_op, job_ready=self.job_ready,
            machine_free=self.machine_free, op_machine=self.op_machine, op_start=self.op_start,
        )  # fmt: skip
        self.rule_operations += cp.n_ops - self.scheduled
        self.scheduled = cp.n_ops
        self.next_op = cp.job_op_start[1:].copy()
        self.end_op = self.next_op.copy()
        self.makespan = makespan_of(cp, self.op_machine, self.op_start)

    def dispatch(self, job: int) -> None:
        """Place the next operation of a candidate job at its earliest start."""
        if not (0 <= job < self.cp.n_jobs and self.candidates[job]):
            raise ValueError(f"job index {job} is not a candidate at t*={self.t_star}")
        cp = self.cp
        self.work_left -= int(cp.op_min_duration[self.next_op[job]])
        end = kernels.place(
            job, self.next_op, self.job_ready, self.est, self.machine_free,
            self.machine_load, self.single_machine, cp.duration_matrix, cp.eligible,
            cp.op_min_duration, self.op_machine, self.op_start,
        )  # fmt: skip
        self.scheduled += 1
        self.makespan = max(self.makespan, int(end))
        if self.horizon and self.next_op[job] == self.end_op[job]:
            self._open -= 1
            self._admit()
        self._refresh()
