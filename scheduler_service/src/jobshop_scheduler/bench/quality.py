"""Plan-quality benchmark (``schedctl benchmark``): PPO greedy against every dispatching rule.

Instance sets: Taillard ta01-ta10 (15x15) and ta71-ta80 (100x20), referenced against their best
known makespans; seeded production-like flexible instances (170 jobs) and classic 170x10 shops
drawn with Taillard's generator (the size of the latency target), both referenced against the
best dispatching rule on each instance, since no proven optimum exists for them. The gap of a
method on an instance is ``makespan / reference - 1``. Times are wall-clock seconds around the
scheduling call only (compiling the problem and validating the plan are excluded). Every PPO plan
is also checked by the domain validator; an invalid plan is an error (exit code 1).

Outputs, under ``--out``: ``results.csv`` (one row per set, instance and method), ``summary.csv``
(the table printed per set) and ``gaps.png`` (mean gap per method and set).

With ``--budgets`` the command runs the anytime benchmark instead (`bench.search_quality`): our
search against OR-Tools CP-SAT at equal time budgets, on Taillard sets and generated shapes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.arg_types import non_negative
from jobshop_scheduler.bench import search_quality
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import RULES, dispatch_arrays, makespan_of
from jobshop_scheduler.instances import TAILLARD, load_taillard
from jobshop_scheduler.instances.families import FAMILIES
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.model_store import ModelError, load_model
from jobshop_scheduler.rl.sampling import random_taillard

PPO = "ppo"
METHODS: tuple[str, ...] = (PPO, *RULES)
SETS: dict[str, tuple[str, ...]] = {
    "ta01-10": tuple(f"ta{i:02d}" for i in range(1, 11)),
    "ta71-80": tuple(f"ta{i:02d}" for i in range(71, 81)),
    "production": (),  # generated: see select_instances
    "classic170x10": (),  # generated: see select_instances
}
GENERATED = ("production", "classic170x10")
QUICK_TAILLARD = {"ta01-10": 3, "ta71-80": 1}
QUICK_PRODUCTION = 3
PRODUCTION_JOBS = 170
LARGE_CLASSIC = (170, 10)  # jobs, machines (= operations per job)


@dataclass(frozen=True, slots=True)
class Instance:
    """One benchmark instance: a Taillard name, or a production-like seed."""

    set_name: str
    name: str
    seed: int | None = None  # production-like instances only

    def problem(self) -> Problem:
        if self.seed is None:
            return load_taillard(self.name)
        if self.set_name == "classic170x10":
            jobs, machines = LARGE_CLASSIC
            rng = np.random.default_rng(self.seed)
            return random_taillard(rng, (jobs, jobs), (machines, machines))
        return production_like(PRODUCTION_JOBS, seed=self.seed)

    @property
    def best_known(self) -> int | None:
        return TAILLARD[self.name].best_known if self.seed is None else None


@dataclass(frozen=True, slots=True)
class Run:
    """One method on one instance, before references are known."""

    instance: Instance
    method: str
    makespan: int
    seconds: float

    def row(self, reference: int) -> Row:
        i = self.instance
        gap = self.makespan / reference - 1
        return Row(i.set_name, i.name, self.method, self.makespan, reference, gap, self.seconds)


@dataclass(frozen=True, slots=True)
class Row:
    """A line of results.csv."""

    set: str
    instance: str
    method: str
    makespan: int
    reference: int
    gap: float
    seconds: float


@dataclass(frozen=True, slots=True)
class Summary:
    """A line of the per-set table and of summary.csv."""

    set: str
    method: str
    instances: int
    mean_gap_pct: float
    max_gap_pct: float
    mean_ms: float
    wins: int


def select_instances(
    sets: Iterable[str], production_count: int = 20, production_seed: int = 0, quick: bool = False
) -> list[Instance]:
    """The instances of the chosen sets, in set order; ``quick`` keeps a small smoke subset."""
    chosen: list[Instance] = []
    for set_name in dict.fromkeys(sets):
        if set_name in GENERATED:
            count = min(production_count, QUICK_PRODUCTION) if quick else production_count
            seeds = range(production_seed, production_seed + count)
            prefix = "prod" if set_name == "production" else "c170x10"
            chosen += [Instance(set_name, f"{prefix}-s{seed}", seed) for seed in seeds]
        else:
            names = SETS[set_name][: QUICK_TAILLARD[set_name]] if quick else SETS[set_name]
            chosen += [Instance(set_name, name) for name in names]
    return chosen


def run_method(
    cp: CompiledProblem, method: str, scorer: FastScorer
) -> tuple[list[int], list[int], float]:
    """(machine per op, start per op, seconds of the scheduling call) for one method."""
    if method == PPO:
        start = time.perf_counter()
        state = greedy_schedule(cp, scorer)
        seconds = time.perf_counter() - start
        return state.op_machine.tolist(), state.op_start.tolist(), seconds
    start = time.perf_counter()
    op_machine, op_start = dispatch_arrays(cp, method)
    return op_machine, op_start, time.perf_counter() - start


def evaluate_instance(instance: Instance, scorer: FastScorer) -> tuple[list[Run], list[str]]:
    """Every method on one instance; errors name each invalid PPO plan."""
    problem = instance.problem()
    return run_methods(instance, problem, compile_problem(problem), scorer)


def run_methods(
    instance: Instance, problem: Problem, cp: CompiledProblem, scorer: FastScorer
) -> tuple[list[Run], list[str]]:
    """PPO and every rule on ``problem``; errors name each invalid PPO plan."""
    runs: list[Run] = []
    errors: list[str] = []
    for method in METHODS:
        op_machine, op_start, seconds = run_method(cp, method, scorer)
        if method == PPO:
            report = validate(problem, cp.to_schedule(op_machine, op_start))
            if not report.ok:
                shown = "; ".join(str(v) for v in report.violations[:3])
                errors.append(
                    f"{instance.name}: invalid PPO schedule "
                    f"({len(report.violations)} violations): {shown}"
                )
        runs.append(Run(instance, method, makespan_of(cp, op_machine, op_start), seconds))
    return runs, errors


def with_references(runs: Sequence[Run]) -> list[Row]:
    """Attach the reference (best known, else best rule on the instance) and the gap."""
    best_rule: dict[Instance, int] = {}
    for r in runs:
        if r.method in RULES:
            best_rule[r.instance] = min(best_rule.get(r.instance, r.makespan), r.makespan)
    return [r.row(r.instance.best_known or best_rule[r.instance]) for r in runs]


def benchmark(
    instances: Sequence[Instance], scorer: FastScorer, progress: bool = False
) -> tuple[list[Row], list[str]]:
    """Run every method on every instance: result rows and errors (invalid PPO plans)."""
    runs: list[Run] = []
    errors: list[str] = []
    bar = tqdm(instances, desc="benchmark", unit="instance", file=sys.stderr, disable=not progress)
    for instance in bar:
        bar.set_postfix_str(instance.name)
        instance_runs, instance_errors = evaluate_instance(instance, scorer)
        runs += instance_runs
        errors += instance_errors
    return with_references(runs), errors


def winners(rows: Sequence[Row]) -> dict[tuple[str, str], str]:
    """(set, instance) -> the method strictly best on it; ties have no winner."""
    by_instance: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_instance.setdefault((row.set, row.instance), []).append(row)
    won = {}
    for key, group in by_instance.items():
        best = min(r.makespan for r in group)
        leaders = [r.method for r in group if r.makespan == best]
        if len(leaders) == 1:
            won[key] = leaders[0]
    return won


def summarise(rows: Sequence[Row]) -> list[Summary]:
    """One Summary per (set, method), sets and methods in run order."""
    won = winners(rows)
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.set, row.method), []).append(row)
    summaries = []
    for (set_name, method), group in groups.items():
        gaps = [100 * r.gap for r in group]
        wins = sum(1 for r in group if won.get((r.set, r.instance)) == method)
        mean_ms = 1000 * statistics.fmean(r.seconds for r in group)
        summaries.append(
            Summary(set_name, method, len(group), statistics.fmean(gaps), max(gaps), mean_ms, wins)
        )
    return summaries


def format_table(set_name: str, summaries: Sequence[Summary]) -> str:
    """The table of one set, methods as rows."""
    mine = [s for s in summaries if s.set == set_name]
    reference = "best rule per instance" if set_name in GENERATED else "best known"
    count = mine[0].instances if mine else 0
    rows = [
        (s.method, f"{s.mean_gap_pct:.2f}", f"{s.max_gap_pct:.2f}", f"{s.mean_ms:.1f}", s.wins)
        for s in mine
    ]
    headers = ("method", "mean gap %", "max gap %", "mean ms", "wins")
    return f"{set_name}: {count} instance{'' if count == 1 else 's'}, gap vs {reference}\n" + (
        table.render(headers, rows, right=range(1, 5), indent="  ")
    )


def verdict(summaries: Sequence[Summary]) -> str:
    """One line: per set, does PPO's mean gap beat the best single rule's?"""
    parts = []
    for set_name in dict.fromkeys(s.set for s in summaries):
        mine = {s.method: s for s in summaries if s.set == set_name}
        best = min((mine[r] for r in RULES if r in mine), key=lambda s: s.mean_gap_pct)
        ppo = mine[PPO].mean_gap_pct
        answer = "yes" if ppo < best.mean_gap_pct else "no"
        parts.append(f"{set_name}: {answer} ({ppo:.2f}% vs {best.method} {best.mean_gap_pct:.2f}%)")
    return "PPO beats the best single rule (mean gap): " + "; ".join(parts)


def write_csv(path: Path, records: Sequence[Row] | Sequence[Summary], kind: type) -> None:
    """Dataclass records as CSV with a header of their field names."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f.name for f in fields(kind)])
        writer.writerows(astuple(record) for record in records)


def plot_gaps(path: Path, summaries: Sequence[Summary]) -> None:
    """Grouped bars: mean gap per method (bars) within each set (groups)."""
    sets = list(dict.fromkeys(s.set for s in summaries))
    mean = {(s.set, s.method): s.mean_gap_pct for s in summaries}
    fig = Figure(figsize=(max(6.0, 2.5 * len(sets)), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        xs = [k + (i - (len(METHODS) - 1) / 2) * width for k in range(len(sets))]
        bars = ax.bar(xs, [mean.get((s, method), 0.0) for s in sets], width, label=method)
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel("mean gap to reference (%)")
    ax.set_title("Makespan gap per method and instance set")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.margins(y=0.2)  # headroom for the legend
    ax.legend(ncols=len(METHODS), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_outputs(out: Path, rows: Sequence[Row], summaries: Sequence[Summary]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", rows, Row)
    write_csv(out / "summary.csv", summaries, Summary)
    plot_gaps(out / "gaps.png", summaries)


def card_evaluation(summaries: Sequence[Summary], args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark as the model card keeps it: per set and method, gaps and time."""
    command = ["schedctl", "benchmark", "--sets", *args.sets]
    command += ["--production-count", str(args.production_count)]
    command += ["--production-seed", str(args.production_seed)] + (
        ["--quick"] if args.quick else []
    )
    table: dict[str, dict[str, dict[str, float | int]]] = {}
    for s in summaries:
        table.setdefault(s.set, {})[s.method] = {
            "instances": s.instances,
            "mean_gap_pct": round(s.mean_gap_pct, 2),
            "max_gap_pct": round(s.max_gap_pct, 2),
            "mean_ms": round(s.mean_ms, 1),
            "wins": s.wins,
        }
    return {
        "command": " ".join(command),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "reference": "best known makespan (Taillard sets), best rule per instance (generated sets)",
        "sets": table,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options on a (sub)parser."""
    add = parser.add_argument
    add("--sets", nargs="+", choices=list(SETS), default=list(SETS), help="default: all")
    add("--quick", action="store_true", help="smoke subset: ta01-03, ta71, 3 of each generated set")
    add(
        "--production-count",
        type=non_negative,
        default=20,
        help="instances per generated set (production, classic170x10; default: %(default)s)",
    )
    add("--production-seed", type=int, default=0, help="seed of the first one (default: 0)")
    add("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="default: %(default)s")
    add("--out", type=Path, default=Path("out/benchmark"), help="default: %(default)s")
    add("--quiet", action="store_true", help="no progress bar")
    add(
        "--record",
        action="store_true",
        help="write the results into the model card (with --grid: its 'grid' entry)",
    )
    add(
        "--grid",
        nargs="*",
        type=search_quality.parse_shape,
        metavar="SHAPE",
        help="quality by shop shape: greedy PPO and every rule on generated shapes (default "
        "grid 15x15 ... 200x20, plus --production shops; JOBSxMACHINES:FAMILY for another "
        f"family than Taillard's: {', '.join(FAMILIES[1:])}), gaps to long-run references "
        "(--count, --seed, --reference-seconds, --cache); writes grid.csv and grid.png",
    )
    add(
        "--compare",
        type=Path,
        metavar="MODEL_DIR",
        help="paired test of greedy passes: this model against --model-dir's on the same "
        "generated shops (--shapes, --count, --seed) and Taillard sets (--taillard), with the "
        "standard error of each difference; writes compare.csv",
    )
    add(
        "--horizons",
        nargs="+",
        type=non_negative,
        metavar="H",
        help="large requests: the greedy pass seeing at most H jobs at once (0: every job; the "
        "service's --batch-size) and the legacy rule on the same generated shops (--shapes, "
        "--production, --count, --seed), as makespan / lower bound and ms per pass; writes "
        "horizons.csv",
    )
    search_quality.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """The benchmark command: 0 ok, 1 an invalid PPO plan, 2 no usable model."""
    search_quality.fill_defaults(args)
    if args.budgets is not None:
        return search_quality.run(args)
    try:
        model = load_model(Path(args.model_dir))
    except ModelError as exc:
        print(f"benchmark: cannot load the model: {exc}", file=sys.stderr)
        return 2
    if args.grid is not None:
        from jobshop_scheduler.bench import grid  # noqa: PLC0415 - its own mode

        return grid.run(args, model)
    if args.compare is not None:
        from jobshop_scheduler.bench import compare  # noqa: PLC0415 - its own mode

        return compare.run(args, model)
    if args.horizons is not None:
        from jobshop_scheduler.bench import horizons  # noqa: PLC0415 - its own mode

        return horizons.run(args, model)
    instances = select_instances(args.sets, args.production_count, args.production_seed, args.quick)
    rows, errors = benchmark(instances, model.scorer, progress=not args.quiet)
    summaries = summarise(rows)
    print(f"model {model.card.version} ({model.path})")
    for set_name in dict.fromkeys(s.set for s in summaries):
        print(format_table(set_name, summaries) + "\n")
    if summaries:
        print(verdict(summaries))
    write_outputs(Path(args.out), rows, summaries)
    print(f"wrote results.csv, summary.csv and gaps.png to {args.out}")
    if args.record and not errors:
        evaluation = {**model.card.evaluation, **card_evaluation(summaries, args)}  # keeps "grid"
        card = dataclasses.replace(model.card, evaluation=evaluation)
        print(f"recorded the evaluation in {card.write(Path(args.model_dir))}")
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    return 1 if errors else 0
