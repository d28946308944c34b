"""Quality by shop shape (``schedctl benchmark --grid``): greedy PPO and every rule, cell by cell.

A policy tuned on two sizes can look good on them and lose to the rule it replaces elsewhere,
so quality is measured over a grid of shapes: classic shops of Taillard's generator from 15x15
to 200x20 (jobs per machine from 1 to 10) and the production-like flexible shops at 50 and 170
jobs, ``--count`` instances per cell from our own seeds (``--seed``). The reference of an
instance is the best plan of a long run (our anytime search and CP-SAT, ``--reference-seconds``
each), cached on disk like the anytime benchmark's (``--cache``), or the best plan of this run
if that is shorter; so a gap here is a gap to the best plan we know, not to a proven optimum.

Prints one row per cell: the mean gap of PPO and of every rule, the best rule, and whether PPO
beats it; writes ``grid.csv`` (one row per instance and method) and ``grid.png`` (a heat map of
the mean gaps) under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.bench import quality, search_quality
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import RULES
from jobshop_scheduler.rl.model_store import LoadedModel
from jobshop_scheduler.search.anytime import warm_up

GRID_SHAPES = ("15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20", "200x20")
CSV_NAME, PNG_NAME = "grid.csv", "grid.png"


def evaluate(
    case: search_quality.Case, model: LoadedModel, args: argparse.Namespace
) -> tuple[list[quality.Row], list[str]]:
    """Every method on one instance, against its long-run reference; invalid PPO plans."""
    instance = quality.Instance(case.set_name, case.name)
    cp = compile_problem(case.problem)
    runs, errors = quality.run_methods(instance, case.problem, cp, model.scorer)
    reference = search_quality.reference(case, model, args)
    reference = min([reference, *(r.makespan for r in runs)])
    return [r.row(reference) for r in runs], errors


@dataclass(frozen=True)
class Cell:
    """One shape's results: mean gap % per method and how PPO fares against the best rule."""

    name: str
    instances: int
    gaps: dict[str, float]

    @property
    def best_rule(self) -> str:
        return min(RULES, key=lambda rule: self.gaps[rule])

    @property
    def ppo_margin(self) -> float:
        """PPO's mean gap minus the best rule's; below 0: PPO wins the cell."""
        return self.gaps[quality.PPO] - self.gaps[self.best_rule]


def cells_of(summaries: Sequence[quality.Summary]) -> list[Cell]:
    """The cells in run order, from the per-(cell, method) summaries."""
    found: dict[str, Cell] = {}
    for s in summaries:
        found.setdefault(s.set, Cell(s.set, s.instances, {})).gaps[s.method] = s.mean_gap_pct
    return list(found.values())


def cell_table(cells: Sequence[Cell]) -> str:
    """One row per cell: mean gap % of each method, the best rule, and PPO's verdict."""
    rows = [
        (c.name, c.instances, *(f"{c.gaps[m]:.2f}" for m in quality.METHODS), c.best_rule,
         f"{c.ppo_margin:+.2f}", "yes" if c.ppo_margin < 0 else "NO")
        for c in cells
    ]  # fmt: skip
    headers = ("cell", "n", *quality.METHODS, "best rule", "ppo - best", "ppo wins")
    numbers = range(1, len(quality.METHODS) + 2)
    return table.render(headers, rows, right=[*numbers, len(headers) - 2])


def plot_heat_map(path: Path, cells: Sequence[Cell]) -> None:
    """Cells down, methods across, colour and label the mean gap %."""
    values = [[c.gaps[m] for m in quality.METHODS] for c in cells]
    fig = Figure(figsize=(1.1 * len(quality.METHODS) + 2.5, 0.45 * len(cells) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdYlGn_r", aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(quality.METHODS)), quality.METHODS)
    ax.set_yticks(range(len(cells)), [c.name for c in cells])
    ax.set_title("Mean gap % to the best plan found, by shop shape (greedy, one pass)")
    fig.colorbar(image, ax=ax, label="mean gap %")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def card_grid(cells: Sequence[Cell], args: argparse.Namespace) -> dict[str, Any]:
    """The grid as the model card keeps it (``--record``): per cell, every method's mean gap."""
    shapes = [str(shape) for shape in args.grid] if args.grid else list(GRID_SHAPES)
    command = ["schedctl", "benchmark", "--grid", *shapes, "--production"]
    command += [str(n) for n in args.production]
    if args.short_routes:
        command += ["--short-routes", *(str(n) for n in args.short_routes)]
    command += ["--count", str(args.count), "--seed", str(args.seed)]
    command += ["--reference-seconds", f"{args.reference_seconds:g}"]
    return {
        "command": " ".join(command),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reference": f"best plan of {args.reference_seconds:g} s runs of our search and CP-SAT",
        "cells": {
            c.name: {
                "instances": c.instances,
                "mean_gap_pct": {m: round(c.gaps[m], 2) for m in quality.METHODS},
                "best_rule": c.best_rule,
                "ppo_wins": c.ppo_margin < 0,
            }
            for c in cells
        },
    }


def run(args: argparse.Namespace, model: LoadedModel) -> int:
    """The grid benchmark: 0 ok, 1 an invalid PPO plan."""
    warm_up()
    shapes = args.grid or [search_quality.parse_shape(s) for s in GRID_SHAPES]
    cases = search_quality.generated_cases(
        shapes, args.production, args.count, args.seed, short=args.short_routes
    )
    rows: list[quality.Row] = []
    errors: list[str] = []
    bar = tqdm(cases, desc="grid", unit="instance", file=sys.stderr, disable=args.quiet)
    for case in bar:
        bar.set_postfix_str(case.name)
        found, invalid = evaluate(case, model, args)
        rows += found
        errors += invalid
    cells = cells_of(quality.summarise(rows))
    seconds = args.reference_seconds
    print(f"model {model.card.version} ({model.path}); references: best of {seconds:g} s runs")
    print(cell_table(cells))
    lost = [c.name for c in cells if c.ppo_margin >= 0]
    print(f"PPO beats the best rule in {len(cells) - len(lost)} of {len(cells)} cells"
          + (f"; not in {', '.join(lost)}" if lost else ""))  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quality.write_csv(out / CSV_NAME, rows, quality.Row)
    plot_heat_map(out / PNG_NAME, cells)
    print(f"wrote {CSV_NAME} and {PNG_NAME} to {out}")
    if args.record and not errors:
        evaluation = {**model.card.evaluation, "grid": card_grid(cells, args)}
        card = dataclasses.replace(model.card, evaluation=evaluation)
        print(f"recorded the grid in {card.write(Path(args.model_dir))}")
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    return 1 if errors else 0
