"""OR-Tools CP-SAT on the same problem: the search's exact polish and the benchmark's rival.

The model is the standard one: an interval per operation and eligible machine (optional, with
exactly one present, when the operation has a choice), job chains as precedences, release times
as earliest starts, a machine busy until some time as a fixed interval, one no-overlap per
machine, and the makespan to minimise. A hint (the best plan so far) warm-starts the solver.
OR-Tools is an optional extra (`jobshop-scheduler[cpsat]`): without it `available()` is false
and the search skips this stage.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem

IntArray = NDArray[np.int64]


def available() -> bool:
    """Whether OR-Tools is installed."""
    return importlib.util.find_spec("ortools") is not None


@dataclass(frozen=True, slots=True)
class CpSatResult:
    op_machine: IntArray
    op_start: IntArray
    makespan: int
    bound: int  # the solver's proven lower bound
    optimal: bool


def _build(cp: CompiledProblem, model: Any) -> tuple[Any, list[Any], list[list[tuple[int, Any]]]]:
    """Variables and constraints; returns (makespan, starts, [(machine, presence)] per op)."""
    horizon = cp.horizon()
    makespan = model.new_int_var(0, horizon, "makespan")
    starts: list[Any] = []
    choices: list[list[tuple[int, Any]]] = []
    per_machine: list[list[Any]] = [[] for _ in range(cp.n_machines)]
    for op, alternatives in enumerate(cp.alternatives):
        earliest = int(cp.release_time[cp.op_job[op]])
        start = model.new_int_var(earliest, horizon, f"s{op}")
        end = model.new_int_var(earliest, horizon, f"e{op}")
        options: list[tuple[int, Any]] = []
        if len(alternatives) == 1:
            k, p = alternatives[0]
            per_machine[k].append(model.new_interval_var(start, p, end, f"i{op}"))
            options.append((k, model.new_constant(1)))
        else:
            for k, p in alternatives:
                present = model.new_bool_var(f"x{op}_{k}")
                per_machine[k].append(
                    model.new_optional_interval_var(start, p, end, present, f"i{op}_{k}")
                )
                options.append((k, present))
            model.add_exactly_one(present for _, present in options)
        starts.append((start, end))
        choices.append(options)
    for op in range(cp.n_ops):
        if cp.op_position[op] > 0:
            model.add(starts[op][0] >= starts[op - 1][1])
        model.add(makespan >= starts[op][1])
    for k, intervals in enumerate(per_machine):
        ready = int(cp.machine_ready[k])
        busy = [model.new_fixed_size_interval_var(0, ready, f"busy{k}")] if ready > 0 else []
        model.add_no_overlap([*intervals, *busy])
    model.minimize(makespan)
    return makespan, starts, choices


def solve(
    cp: CompiledProblem,
    seconds: float,
    hint: tuple[IntArray, IntArray] | None = None,
    workers: int = 1,
    seed: int = 0,
) -> CpSatResult | None:
    """The best plan CP-SAT finds within `seconds`; None when it finds none."""
    from ortools.sat.python import cp_model  # noqa: PLC0415 - optional, heavy

    model = cp_model.CpModel()
    makespan, starts, choices = _build(cp, model)
    if hint is not None:
        machines, begins = hint
        for op, (start, _) in enumerate(starts):
            model.add_hint(start, int(begins[op]))
            for k, present in choices[op]:
                if len(choices[op]) > 1:
                    model.add_hint(present, int(machines[op]) == k)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(seconds, 0.001)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    op_start = np.array([solver.value(s) for s, _ in starts], dtype=np.int64)
    op_machine = np.array(
        [next(k for k, present in options if solver.value(present)) for options in choices],
        dtype=np.int64,
    )
    return CpSatResult(
        op_machine, op_start, int(solver.value(makespan)), int(solver.best_objective_bound),
        status == cp_model.OPTIMAL,
    )  # fmt: skip
