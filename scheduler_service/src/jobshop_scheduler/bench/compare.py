"""Two models side by side (``schedctl benchmark --compare DIR``): is the candidate better?

Models close in quality differ by a few tenths of a percent, while one instance moves by
several percent between them in either direction: ten named instances cannot tell them apart
(docs/benchmark.md, "What ten instances can tell"). So both models' greedy passes run on the
same shops, many per shape from ``--seed`` on, and each shape gets the paired difference of
their ratios to the shop's best rule with its standard error; ``*`` marks a difference beyond
two standard errors. Taillard's sets (``--taillard``) are reported as gaps to the best known
makespan, paired the same way. Writes ``compare.csv`` (one row per instance) under ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.bench import search_quality
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import best_rule_makespan
from jobshop_scheduler.rl.fast_policy import greedy_schedule
from jobshop_scheduler.rl.model_store import LoadedModel, ModelError, load_model

CSV_NAME = "compare.csv"


@dataclass(frozen=True)
class Pair:
    """One instance: both models' makespans and what they are measured against."""

    set: str
    instance: str
    reference: int  # the best known makespan (Taillard) or the best rule's (generated)
    baseline: int
    candidate: int


@dataclass(frozen=True)
class Difference:
    """One set's paired result; ratios are makespan / reference."""

    set: str
    instances: int
    baseline: float
    candidate: float
    difference: float  # candidate - baseline, mean of the per-instance differences
    standard_error: float
    shorter: int  # instances where the candidate's plan is shorter
    longer: int

    @property
    def beyond_noise(self) -> bool:
        return abs(self.difference) > 2 * self.standard_error


def paired(set_name: str, pairs: list[Pair]) -> Difference:
    base = np.array([p.baseline / p.reference for p in pairs])
    cand = np.array([p.candidate / p.reference for p in pairs])
    diff = cand - base
    error = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    return Difference(
        set_name, len(pairs), float(base.mean()), float(cand.mean()), float(diff.mean()), error,
        int((diff < 0).sum()), int((diff > 0).sum()),
    )  # fmt: skip


def format_table(differences: list[Difference]) -> str:
    """Taillard sets in gap %, generated ones as a ratio to the best rule; differences and
    their standard errors in percentage points of the reference either way."""

    def value(d: Difference, ratio: float) -> str:
        return f"{(ratio - 1) * 100:.2f} %" if d.set.startswith("ta") else f"{ratio:.4f}"

    rows = [
        [
            d.set, d.instances, value(d, d.baseline), value(d, d.candidate),
            f"{d.difference * 100:+.2f} %" + ("*" if d.beyond_noise else " "),
            f"{d.standard_error * 100:.2f} %", f"{d.shorter}/{d.longer}",
        ]
        for d in differences
    ]  # fmt: skip
    headers = ["set", "n", "baseline", "candidate", "difference", "std error", "shorter/longer"]
    return table.render(headers, rows, right=range(1, 6))


def verdict(differences: list[Difference]) -> str:
    better = [d.set for d in differences if d.beyond_noise and d.difference < 0]
    worse = [d.set for d in differences if d.beyond_noise and d.difference > 0]
    said = f"shorter beyond noise on {len(better)} of {len(differences)} sets"
    said += f" ({', '.join(better)})" if better else ""
    said += f"; longer beyond noise on {len(worse)}" + (f" ({', '.join(worse)})" if worse else "")
    return said


def compare(
    cases: list[search_quality.Case], baseline: LoadedModel, candidate: LoadedModel, quiet: bool
) -> list[Pair]:
    pairs: list[Pair] = []
    bar = tqdm(cases, desc="compare", unit="instance", file=sys.stderr, disable=quiet)
    for case in bar:
        bar.set_postfix_str(case.name)
        cp = compile_problem(case.problem)
        reference = case.best_known or best_rule_makespan(cp)
        spans = [greedy_schedule(cp, m.scorer).makespan for m in (baseline, candidate)]
        pairs.append(Pair(case.set_name, case.name, reference, *spans))
    return pairs


def run(args: argparse.Namespace, baseline: LoadedModel) -> int:
    """The comparison: 0 ok, 2 the candidate does not load."""
    try:
        candidate = load_model(Path(args.compare))
    except ModelError as exc:
        print(f"benchmark: cannot load the --compare model: {exc}", file=sys.stderr)
        return 2
    pairs = compare(search_quality.select_cases(args), baseline, candidate, args.quiet)
    by_set: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_set.setdefault(pair.set, []).append(pair)
    differences = [paired(name, found) for name, found in by_set.items()]
    print(f"baseline  {baseline.card.version} ({baseline.path})")
    print(f"candidate {candidate.card.version} ({candidate.path})")
    print("greedy passes on the same instances; * beyond two standard errors")
    print(format_table(differences))
    print(verdict(differences))
    search_quality.write_records(Path(args.out), CSV_NAME, Pair, pairs)
    return 0
