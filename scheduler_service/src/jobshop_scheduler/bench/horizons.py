"""Large requests (``schedctl benchmark --horizons H ...``): what seeing fewer jobs costs.

On a request of more jobs than the service's ``--batch-size``, the greedy pass opens at most
that many at once (`rl.state.ShopState`'s horizon, `planner.Planner.horizon`). This mode runs
the pass at each horizon H (0: every job) and the legacy rule on the same generated shops, and
prints per shape each one's mean makespan as a ratio to the shop's lower bound and the mean
milliseconds of a pass: the trade a plant makes when it sets ``--batch-size``. Writes
``horizons.csv``, one row per instance and method.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.bench import search_quality
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE, dispatch_arrays, makespan_of
from jobshop_scheduler.rl.fast_policy import greedy_schedule, warm_up
from jobshop_scheduler.rl.model_store import LoadedModel
from jobshop_scheduler.search.bounds import lower_bound

CSV_NAME = "horizons.csv"


@dataclass(frozen=True)
class Run:
    """One method on one instance."""

    set: str
    instance: str
    jobs: int
    method: str  # "h170", "all" (horizon 0) or the legacy rule
    makespan: int
    lower_bound: int
    seconds: float


def method_name(horizon: int) -> str:
    return f"h{horizon}" if horizon else "all"


def measure(
    cases: list[search_quality.Case], model: LoadedModel, horizons: list[int], quiet: bool
) -> list[Run]:
    warm_up(model.scorer)
    runs: list[Run] = []
    bar = tqdm(cases, desc="horizons", unit="instance", file=sys.stderr, disable=quiet)
    for case in bar:
        bar.set_postfix_str(case.name)
        cp = compile_problem(case.problem)
        bound = lower_bound(cp)
        began = time.perf_counter()
        spans = [(LEGACY_RULE, makespan_of(cp, *dispatch_arrays(cp, LEGACY_RULE)))]
        took = [time.perf_counter() - began]
        for horizon in horizons:
            began = time.perf_counter()
            state = greedy_schedule(cp, model.scorer, horizon)
            spans.append((method_name(horizon), state.makespan))
            took.append(time.perf_counter() - began)
        runs += [
            Run(case.set_name, case.name, cp.n_jobs, method, makespan, bound, seconds)
            for (method, makespan), seconds in zip(spans, took, strict=True)
        ]
    return runs


def format_table(runs: list[Run], methods: list[str]) -> str:
    """Per set: mean makespan / lower bound and mean ms per pass of each method."""
    rows = []
    for name in dict.fromkeys(r.set for r in runs):
        cells: list[object] = [name, len({r.instance for r in runs if r.set == name})]
        for method in methods:
            mine = [r for r in runs if r.set == name and r.method == method]
            ratio = np.mean([r.makespan / r.lower_bound for r in mine])
            cells.append(f"{ratio:.4f} {np.mean([r.seconds for r in mine]) * 1000:6.0f} ms")
        rows.append(cells)
    return table.render(["set", "n", *methods], rows, right=range(1, len(methods) + 2))


def run(args: argparse.Namespace, model: LoadedModel) -> int:
    """The comparison of horizons; 0 ok."""
    cases = search_quality.generated_cases(
        args.shapes, args.production, args.count, args.seed, short=args.short_routes
    )
    runs = measure(cases, model, args.horizons, args.quiet)
    methods = [LEGACY_RULE, *(method_name(h) for h in args.horizons)]
    print(f"model {model.card.version} ({model.path})")
    print("mean makespan / lower bound, and mean time per pass; "
          "hN: the policy sees N jobs at once, all: every job")  # fmt: skip
    print(format_table(runs, methods))
    search_quality.write_records(Path(args.out), CSV_NAME, Run, runs)
    return 0
