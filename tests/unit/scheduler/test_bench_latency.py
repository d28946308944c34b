"""The latency benchmark's pure parts: request shapes, option defaults, ratios, the table."""

from __future__ import annotations

import argparse
import math

import pytest

from jobshop_scheduler.bench import latency, report
from jobshop_scheduler.bench.load import LoadResult, classic_problem, percentile
from jobshop_scheduler.bench.report import Cell, CellResult, MirrorResult
from jobshop_scheduler.domain.validator import validate_problem

pytestmark = pytest.mark.unit


def test_classic_requests_are_ten_operations_on_twenty_machines() -> None:
    problem = classic_problem(170, seed=3)
    assert len(problem.machines) == 20 and len(problem.jobs) == 170
    for job in problem.jobs:
        machines = [op.alternatives[0].machine_id for op in job.operations]
        assert len(machines) == 10 == len(set(machines))  # 10 distinct machines of 20
        assert all(len(op.alternatives) == 1 for op in job.operations)
    assert validate_problem(problem) == []
    assert classic_problem(170, seed=3) == problem  # reproducible
    assert classic_problem(170, seed=4) != problem


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    return latency.resolve(parser.parse_args(argv))


def test_quick_changes_only_the_defaults() -> None:
    args = parse()
    assert (args.sizes, args.requests, args.concurrency) == ((10, 50, 170), 50, (1, 8))
    args = parse("--quick")
    assert (args.sizes, args.requests, args.concurrency) == ((5, 12), 4, (1, 2))
    args = parse("--quick", "--requests", "7", "--sizes", "9", "9", "3")
    assert (args.sizes, args.requests) == ((9, 3), 7)
    with pytest.raises(SystemExit):
        parse("--concurrency", "0")


def result(policy: str, concurrency: int, p50: float, rps: float) -> CellResult:
    return CellResult("classic", 50, policy, concurrency, 10, 0, p50, p50, p50, p50, rps)


def test_ratios_compare_ppo_with_heuristic_and_concurrency_with_one() -> None:
    cells = report.with_ratios(
        [
            result("ppo", 1, 30.0, 30.0),
            result("heuristic", 1, 10.0, 90.0),
            result("ppo", 8, 60.0, 45.0),
            result("heuristic", 8, 0.0, 0.0),  # every call failed: no ratio, not a crash
        ]
    )
    assert [c.ppo_vs_heuristic_p50 for c in cells] == [3.0, None, None, None]
    assert [c.throughput_vs_c1 for c in cells] == [None, None, 1.5, 0.0]
    table = report.format_table(cells, 10)
    assert "3.00x" in table and "1.50x" in table
    assert len(table.splitlines()) == 4 + len(cells)  # title, two kind notes, header


def test_grid_holds_every_cell_once() -> None:
    cells = latency.grid((10, 170), (1, 8))
    assert len(cells) == len(set(cells)) == 2 * 2 * 2 * 2
    assert Cell("production", 170, "heuristic", 8) in cells


def test_mirror_target_and_json_without_nan() -> None:
    off = LoadResult(latencies_ms=[100.0] * 10)
    on = LoadResult(latencies_ms=[105.0] * 10)
    outcomes = {"sent": 10, "failed": 0, "dropped": 0}
    assert MirrorResult.of(170, off, on, outcomes, 10).within_target()
    slow = LoadResult(latencies_ms=[120.0] * 10)
    assert not MirrorResult.of(170, off, slow, outcomes, 10).within_target()
    assert math.isnan(percentile([], 50))
    assert report.jsonable({"a": [float("nan"), 1.5], "b": float("inf")}) == {
        "a": [None, 1.5],
        "b": None,
    }
