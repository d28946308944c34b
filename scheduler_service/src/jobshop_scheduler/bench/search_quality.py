"""Anytime benchmark (``schedctl benchmark --budgets``): our search against CP-SAT, budget by
budget.

For every instance and budget, two methods get the same wall-clock budget in the same run:
``search`` (the service's path, `Planner.plan`: the greedy PPO pass, the portfolio and
`search.anytime.improve`, with compiling the request, the pass and validating the plan counted
in the budget) and ``cpsat`` (OR-Tools CP-SAT alone, on every core).
Budget 0 is the greedy pass. Gaps are ``makespan / reference - 1``:

- Taillard sets: the best known makespan;
- generated shapes (Taillard's generator, seeds from ``--seed``) and production-like shops: the
  best plan of a long run (CP-SAT and our search, ``--reference-seconds`` each), or of any method
  in this run if that is better. Long runs are cached on disk (``--cache``), keyed by the
  instance, so a second benchmark does not repeat them.

Prints one table per set (mean and max gap per budget and method, how often CP-SAT found a plan,
and on how many instances our plan was shorter, equal or longer) and writes ``search.csv`` under
``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.arg_types import non_negative, positive
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.instances import TAILLARD, families, load_taillard
from jobshop_scheduler.instances.families import Shape
from jobshop_scheduler.instances.flexible import GENERATORS
from jobshop_scheduler.instances.taillard import generator_seed, taillard
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.model_store import LoadedModel, ModelError, load_model
from jobshop_scheduler.search import cpsat
from jobshop_scheduler.search.anytime import improve, warm_up

DEFAULT_SHAPES = ("15x15", "20x15", "20x20", "30x20", "50x20", "100x20")
# `schedctl benchmark --compare` (`bench.compare`): classic squares and shapes of fewer and
# more jobs per machine, the families at about one job per machine, the long alike shops the
# window scorer also serves; many shops each, since close models differ by tenths of a percent
COMPARE_SHAPES = (
    "15x15", "20x15", "20x20", "30x20", "12x16", "10x15", "15x10", "50x20",
    "15x15:bottleneck", "20x20:bottleneck", "20x20:machine_correlated", "20x20:job_correlated",
    "20x20:narrow", "20x20:partial", "15x20:two_set", "20x20:flow",
    "50x20:two_set", "40x10:flow", "60x10:line",
)  # fmt: skip
COMPARE_COUNT, COMPARE_SEED = 100, 10_000
# and flexible shops whose jobs have one to four operations, which the policy was not taught on
# and a model can lose on without any other set moving (docs/benchmark.md, "Short routes")
COMPARE_SHORT_ROUTES = (20, 80)
DEFAULT_PRODUCTION = (50, 170)
# `schedctl benchmark --horizons` (`bench.horizons`): shops past the default batch size of 170
# jobs, classic ones of 10 and 20 machines, two families, and production-like ones
HORIZON_SHAPES = ("200x20", "400x20", "300x10", "200x20:flow", "250x20:two_set")
HORIZON_PRODUCTION = (200, 350, 500, 800)
TAILLARD_SETS = {
    "ta01-10": tuple(f"ta{i:02d}" for i in range(1, 11)),
    "ta71-80": tuple(f"ta{i:02d}" for i in range(71, 81)),
}
METHODS = ("search", "cpsat")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
DEFAULT_CACHE = DEFAULT_CACHE / "jobshop-rollout" / "references"


@dataclass(frozen=True, slots=True)
class Case:
    """One instance: a Taillard name, a generated shape and seed, or a production-like shop."""

    set_name: str
    name: str
    problem: Problem
    best_known: int | None = None


@dataclass(frozen=True, slots=True)
class Row:
    set: str
    instance: str
    method: str
    budget_ms: int
    makespan: int  # 0: no plan found
    reference: int
    gap: float  # nan without a plan
    seconds: float


def parse_budget(text: str) -> int:
    """'0', '100ms', '1s', '2.5s' or a bare number of milliseconds -> milliseconds."""
    value = text.strip().lower()
    try:
        if value.endswith("ms"):
            return int(value[:-2])
        if value.endswith("s"):
            return round(float(value[:-1]) * 1000)
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a budget: {text!r} (try 0, 100ms or 1s)") from None


def parse_budgets(text: str) -> list[int]:
    budgets = [parse_budget(part) for part in text.split(",") if part.strip()]
    if not budgets or any(b < 0 for b in budgets):
        raise argparse.ArgumentTypeError(f"need budgets >= 0, got {text!r}")
    return sorted(set(budgets))


def parse_shape(text: str) -> Shape:
    try:
        return families.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fill_defaults(args: argparse.Namespace) -> None:
    """The defaults of --shapes, --count and --seed, which differ by mode: a comparison of two
    close models needs many shops, a run against CP-SAT few."""
    comparing = getattr(args, "compare", None) is not None
    large = getattr(args, "horizons", None) is not None
    if args.shapes is None:
        names = COMPARE_SHAPES if comparing else HORIZON_SHAPES if large else DEFAULT_SHAPES
        args.shapes = [parse_shape(name) for name in names]
    if args.production is None:
        args.production = list(HORIZON_PRODUCTION if large else DEFAULT_PRODUCTION)
    if args.short_routes is None:
        args.short_routes = list(COMPARE_SHORT_ROUTES) if comparing else []
    if args.count is None:
        args.count = COMPARE_COUNT if comparing else 5
    if args.seed is None:
        args.seed = COMPARE_SEED if comparing else 100


def select_cases(args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    for set_name in args.taillard:
        cases += [
            Case(set_name, n, load_taillard(n), TAILLARD[n].best_known)
            for n in TAILLARD_SETS[set_name]
        ]
    return cases + generated_cases(
        args.shapes, args.production, args.count, args.seed, short=args.short_routes
    )


def generated_cases(
    shapes: Sequence[tuple[int, int] | Shape],
    production: Sequence[int],
    count: int,
    seed: int,
    *,
    short: Sequence[int] = (),
) -> list[Case]:
    """``count`` instances per shape, per production-like size and per short-route size
    (`short`), the k-th of each drawn from ``seed + k``: Taillard's generator, or a shape's
    family (`instances.families`)."""
    cases: list[Case] = []
    for shape in (Shape(*given) for given in shapes):
        for k in range(count):
            s = seed + k
            cases.append(Case(str(shape), f"{shape}-s{s}", _generated(shape, s)))
    for prefix, sizes in (("prod", production), ("short", short)):
        cases += [
            Case(
                f"{prefix}{jobs}", f"{prefix}{jobs}-s{seed + k}", GENERATORS[prefix](jobs, seed + k)
            )
            for jobs in sizes
            for k in range(count)
        ]
    return cases


def _generated(shape: Shape, seed: int) -> Problem:
    if shape.family != "taillard":
        rng = np.random.default_rng([seed, families.FAMILIES.index(shape.family)])
        return families.family_shop(shape.family, shape.jobs, shape.machines, rng)
    # Taillard's generator takes two seeds: time and machine orders.
    time_seed, machine_seed = (
        generator_seed(x) for x in (1_000_003 * seed + 17, 7_919 * seed + 29)
    )
    return taillard(shape.jobs, shape.machines, time_seed, machine_seed, "")


def run_search(
    problem: Problem, model: LoadedModel, budget_ms: int, iterations: int | None = None
) -> tuple[int, float]:
    """Our answer under the budget, as the service gives it: `Planner.plan`, which compiles the
    request, runs the greedy pass within its share of the budget, the portfolio and the search,
    and validates the plan, all in the budget. Budget 0 is the greedy pass alone: the policy's
    own quality, with no rule's plan in its place. With `iterations`, a fixed effort instead of
    the clock: reproducible whatever the machine's speed."""
    started = time.perf_counter()
    if budget_ms == 0:
        state = greedy_schedule(compile_problem(problem), model.scorer)
        return int(state.makespan), time.perf_counter() - started
    plan = Planner(model).plan(problem, "ppo", budget_ms, iterations=iterations)
    return plan.schedule.makespan, time.perf_counter() - started


def run_cpsat(cp: CompiledProblem, budget_ms: int, workers: int) -> tuple[int, float]:
    started = time.perf_counter()
    result = cpsat.solve(cp, budget_ms / 1000, workers=workers)
    return (result.makespan if result else 0), time.perf_counter() - started


def reference(case: Case, model: LoadedModel, args: argparse.Namespace) -> int:
    """Best known, else the cached (or now computed) long runs' best makespan."""
    if case.best_known is not None:
        return case.best_known
    length = float(args.reference_seconds)
    label = f"{int(length)}s" if length.is_integer() else f"{round(length * 1000)}ms"
    path = Path(args.cache) / f"{case.name}-{label}.json"
    if path.exists():
        return int(json.loads(path.read_text())["makespan"])
    budget = int(args.reference_seconds * 1000)
    values = [run_search(case.problem, model, budget)[0]]
    if cpsat.available():
        values.append(run_cpsat(compile_problem(case.problem), budget, args.workers)[0])
    best = min(v for v in values if v > 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"instance": case.name, "makespan": best, "runs": values}))
    return best


def evaluate(case: Case, model: LoadedModel, args: argparse.Namespace) -> list[Row]:
    cp = compile_problem(case.problem)
    found: list[tuple[str, int, int, float]] = []
    for budget in args.budgets:
        iterations = args.iterations * budget // 1000 if args.iterations else None
        found.append(("search", budget, *run_search(case.problem, model, budget, iterations)))
        if budget > 0 and not args.no_cpsat:
            found.append(("cpsat", budget, *run_cpsat(cp, budget, args.workers)))
    ref = reference(case, model, args)
    if case.best_known is None:
        ref = min([ref, *(m for _, _, m, _ in found if m > 0)])
    return [
        Row(case.set_name, case.name, method, budget, makespan, ref,
            makespan / ref - 1 if makespan else float("nan"), seconds)
        for method, budget, makespan, seconds in found
    ]  # fmt: skip


def format_table(set_name: str, rows: Sequence[Row], budgets: Sequence[int]) -> str:
    mine = [r for r in rows if r.set == set_name]
    count = len({r.instance for r in mine})
    title = f"{set_name}: {count} instances, gap % to " + (
        "best known" if mine and set_name.startswith("ta") else "best plan found (long runs)"
    )
    headers = ("budget", "search mean", "max", "cpsat mean", "max", "cpsat found",
               "search better/equal/worse")  # fmt: skip
    lines = []
    for budget in budgets:
        ours = [r for r in mine if r.budget_ms == budget and r.method == "search"]
        theirs = {r.instance: r for r in mine if r.budget_ms == budget and r.method == "cpsat"}
        found = [r for r in theirs.values() if r.makespan > 0]
        cp_mean = f"{100 * statistics.fmean(r.gap for r in found):.2f}" if found else "-"
        cp_max = f"{100 * max(r.gap for r in found):.2f}" if found else "-"
        lines.append(
            (_label(budget), f"{100 * statistics.fmean(r.gap for r in ours):.2f}",
             f"{100 * max(r.gap for r in ours):.2f}", cp_mean, cp_max,
             f"{len(found)}/{len(theirs)}" if theirs else "-",
             _versus(ours, theirs) if theirs else "-")
        )  # fmt: skip
    return title + "\n" + table.render(headers, lines, right=range(7), indent="  ")


def _versus(ours: Sequence[Row], theirs: dict[str, Row]) -> str:
    """better/equal/worse counts of our plans against CP-SAT's (no plan counts as worse)."""
    better = equal = worse = 0
    for r in ours:
        other = theirs[r.instance].makespan or float("inf")
        better += r.makespan < other
        equal += r.makespan == other
        worse += r.makespan > other
    return f"{better}/{equal}/{worse}"


def _label(budget_ms: int) -> str:
    if budget_ms == 0:
        return "greedy"
    return f"{budget_ms / 1000:g}s" if budget_ms >= 1000 else f"{budget_ms}ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The anytime benchmark's options (used with ``schedctl benchmark --budgets``)."""
    add = parser.add_argument
    add(
        "--budgets",
        type=parse_budgets,
        help="anytime mode: compare the service's answer (the planner: greedy pass, portfolio, "
        "search, all within the budget) with CP-SAT at these budgets, e.g. 0,100ms,1s (0: the "
        "greedy pass alone)",
    )
    add(
        "--shapes",
        nargs="*",
        type=parse_shape,
        help="--budgets, --compare, --horizons: generated shapes JOBSxMACHINES, or "
        "JOBSxMACHINES:FAMILY for another family than Taillard's (default: "
        f"{' '.join(DEFAULT_SHAPES)}; --compare: {' '.join(COMPARE_SHAPES)}; --horizons: "
        f"{' '.join(HORIZON_SHAPES)})",
    )
    add(
        "--count",
        type=positive,
        help="--budgets, --grid, --compare, --horizons: instances per shape (default: 5; "
        f"--compare: {COMPARE_COUNT})",
    )
    add(
        "--seed",
        type=non_negative,
        help="--budgets, --grid, --compare, --horizons: first seed per shape (default: 100; "
        f"--compare: {COMPARE_SEED}: pick fresh seeds for a decision)",
    )
    add(
        "--taillard",
        nargs="*",
        choices=list(TAILLARD_SETS),
        default=list(TAILLARD_SETS),
        help="--budgets: Taillard sets (default: both)",
    )
    add(
        "--production",
        nargs="*",
        type=int,
        help="--budgets, --grid, --horizons: production-like shops of these job counts (default: "
        f"{' '.join(map(str, DEFAULT_PRODUCTION))}; --horizons: "
        f"{' '.join(map(str, HORIZON_PRODUCTION))})",
    )
    add(
        "--short-routes",
        nargs="*",
        type=int,
        metavar="JOBS",
        help="--budgets, --grid, --compare, --horizons: also flexible shops of these job counts "
        "whose jobs have one to four operations (instances.flexible.short_routes; default: none; "
        f"--compare: {' '.join(map(str, COMPARE_SHORT_ROUTES))})",
    )
    add(
        "--reference-seconds",
        type=float,
        default=60.0,
        help="--budgets, --grid: long-run length for generated instances' references (default: 60)",
    )
    add("--cache", type=Path, default=DEFAULT_CACHE, help="--budgets, --grid: references cache")
    add("--workers", type=int, default=os.cpu_count() or 1, help="--budgets: CP-SAT threads")
    add("--no-cpsat", action="store_true", help="--budgets: our search only")
    add(
        "--iterations",
        type=int,
        metavar="N",
        help="--budgets: reproducible mode: our search runs N tabu iterations per second of "
        "budget instead of watching the clock (CP-SAT keeps its time limit)",
    )


def run(args: argparse.Namespace) -> int:
    """The anytime benchmark: 0 ok, 1 an invalid plan, 2 no model or no OR-Tools."""
    if not args.no_cpsat and not cpsat.available():
        print("benchmark: CP-SAT needs OR-Tools (jobshop-scheduler[cpsat])", file=sys.stderr)
        return 2
    try:
        model = load_model(Path(args.model_dir))
    except ModelError as exc:
        print(f"benchmark: cannot load the model: {exc}", file=sys.stderr)
        return 2
    warm_up()
    cases = select_cases(args)
    rows: list[Row] = []
    bar = tqdm(cases, desc="anytime", unit="instance", file=sys.stderr, disable=args.quiet)
    for case in bar:
        bar.set_postfix_str(case.name)
        rows += evaluate(case, model, args)
        _check(case, model.scorer)
    print(f"model {model.card.version}; {os.cpu_count()} cores; CP-SAT workers {args.workers}")
    for set_name in dict.fromkeys(c.set_name for c in cases):
        print(format_table(set_name, rows, args.budgets) + "\n")
    write_records(Path(args.out), "search.csv", Row, rows)
    return 0


def write_records(out: Path, name: str, kind: type, records: Sequence[Any]) -> None:
    """``records`` (instances of the dataclass ``kind``) as ``out/name``, one CSV row each."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / name).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f.name for f in fields(kind)])
        writer.writerows(astuple(r) for r in records)
    print(f"wrote {name} to {out}")


def _check(case: Case, scorer: FastScorer) -> None:
    """A short fixed-effort search must give a valid plan (the validator on our own answer)."""
    cp = compile_problem(case.problem)
    state = greedy_schedule(cp, scorer)
    found = improve(cp, (state.op_machine, state.op_start), iterations=200)
    report = validate(case.problem, cp.to_schedule(found.op_machine, found.op_start))
    if not report.ok or found.makespan < found.lower_bound:
        raise SystemExit(f"benchmark: invalid plan on {case.name}: {report.violations[:1]}")
