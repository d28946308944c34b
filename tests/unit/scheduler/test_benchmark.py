"""The quality benchmark: selection, references and gaps, tables, output files, exit codes."""

from __future__ import annotations

import argparse
import csv
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from jobshop_scheduler.bench import compare, quality, search_quality
from jobshop_scheduler.bench.quality import METHODS, PPO, Instance, Row, Summary
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.domain.validator import ValidationReport, Violation
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import RULES, dispatch_arrays, makespan_of
from jobshop_scheduler.instances import best_known, load_taillard
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.model_store import LoadedModel, ModelCard
from jobshop_scheduler.search.bounds import lower_bound

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def scorer() -> FastScorer:
    """Untrained weights: the benchmark must work, and PPO plans be valid, whatever they are."""
    from sb3_contrib import MaskablePPO  # noqa: PLC0415 - torch only for this module

    from jobshop_scheduler.rl.env import JobShopEnv  # noqa: PLC0415
    from jobshop_scheduler.rl.policy import JobScorerPolicy  # noqa: PLC0415

    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=20)
    model = MaskablePPO(JobScorerPolicy, env, n_steps=64, batch_size=64, device="cpu", seed=0)
    return FastScorer.from_state_dict(model.policy.state_dict())


@pytest.fixture(scope="module")
def outcome(scorer: FastScorer) -> tuple[list[Row], list[str]]:
    instances = quality.select_instances(["ta01-10", "production"], production_count=2, quick=True)
    return quality.benchmark(instances, scorer)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    quality.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_select_instances_full_and_quick() -> None:
    full = quality.select_instances(quality.SETS, production_count=20, production_seed=5)
    assert [i.name for i in full[:10]] == [f"ta{k:02d}" for k in range(1, 11)]
    assert [i.name for i in full[10:20]] == [f"ta{k}" for k in range(71, 81)]
    assert [i.seed for i in full[20:40]] == list(range(5, 25))
    assert [i.seed for i in full[40:]] == list(range(5, 25))
    assert {i.set_name for i in full[40:]} == {"classic170x10"}
    quick = quality.select_instances(quality.SETS, quick=True)
    assert [i.name for i in quick] == [
        "ta01",
        "ta02",
        "ta03",
        "ta71",
        "prod-s0",
        "prod-s1",
        "prod-s2",
        "c170x10-s0",
        "c170x10-s1",
        "c170x10-s2",
    ]
    large = quick[-1].problem()
    assert (len(large.jobs), len(large.jobs[0].operations)) == (170, 10)
    assert quality.select_instances(["production", "production"], production_count=1) == [
        Instance("production", "prod-s0", 0)
    ]


def test_every_method_on_every_instance(outcome: tuple[list[Row], list[str]]) -> None:
    rows, errors = outcome
    assert errors == []  # untrained PPO plans still pass the validator
    instances = ["ta01", "ta02", "ta03", "prod-s0", "prod-s1"]
    assert sorted((r.instance, r.method) for r in rows) == sorted(
        (i, m) for i in instances for m in METHODS
    )
    assert all(r.makespan > 0 and r.seconds > 0 for r in rows)


def test_taillard_gap_against_best_known(outcome: tuple[list[Row], list[str]]) -> None:
    rows, _ = outcome
    mwkr = next(r for r in rows if (r.instance, r.method) == ("ta01", "mwkr"))
    assert (mwkr.makespan, mwkr.reference) == (1491, 1231)
    assert mwkr.gap == pytest.approx(1491 / 1231 - 1) == pytest.approx(0.21121, abs=1e-5)
    for row in rows:
        if row.set == "ta01-10":
            assert row.reference == best_known(row.instance)
            assert row.gap == pytest.approx(row.makespan / row.reference - 1)


def test_production_gap_against_best_rule(outcome: tuple[list[Row], list[str]]) -> None:
    rows, _ = outcome
    for name in ("prod-s0", "prod-s1"):
        mine = [r for r in rows if r.instance == name]
        best_rule = min(r.makespan for r in mine if r.method in RULES)
        assert {r.reference for r in mine} == {best_rule}
        assert min(r.gap for r in mine if r.method in RULES) == 0.0
        ppo = next(r for r in mine if r.method == PPO)
        assert ppo.gap == pytest.approx(ppo.makespan / best_rule - 1)


def _row(instance: str, method: str, makespan: int, seconds: float = 0.01) -> Row:
    return Row("s", instance, method, makespan, 100, makespan / 100 - 1, seconds)


def test_summary_wins_are_strict_and_gaps_in_percent() -> None:
    rows = [
        _row("a", "ppo", 100), _row("a", "spt", 110), _row("a", "mor", 120),
        _row("b", "ppo", 130), _row("b", "spt", 120), _row("b", "mor", 120),  # tie: no winner
    ]  # fmt: skip
    summaries = {s.method: s for s in quality.summarise(rows)}
    assert {m: s.wins for m, s in summaries.items()} == {"ppo": 1, "spt": 0, "mor": 0}
    assert summaries["ppo"].mean_gap_pct == pytest.approx(15.0)
    assert summaries["ppo"].max_gap_pct == pytest.approx(30.0)
    assert summaries["spt"].mean_ms == pytest.approx(10.0)
    assert summaries["mor"].instances == 2


def test_table_and_verdict() -> None:
    summaries = [
        Summary("x", "ppo", 3, 5.0, 9.0, 12.0, 2),
        Summary("x", "spt", 3, 8.0, 9.0, 1.0, 0),
        Summary("x", "mor", 3, 6.0, 9.0, 1.0, 1),
        Summary("y", "ppo", 3, 7.0, 9.0, 12.0, 0),
        Summary("y", "mwkr", 3, 4.0, 9.0, 1.0, 3),
    ]
    table = quality.format_table("x", summaries).splitlines()
    assert "mean gap %" in table[1] and "wins" in table[1]
    assert [line.split()[0] for line in table[2:]] == ["ppo", "spt", "mor"]
    assert table[2].split() == ["ppo", "5.00", "9.00", "12.0", "2"]
    line = quality.verdict(summaries)
    assert "x: yes (5.00% vs mor 6.00%)" in line
    assert "y: no (7.00% vs mwkr 4.00%)" in line


def test_output_files(outcome: tuple[list[Row], list[str]], tmp_path: Path) -> None:
    rows, _ = outcome
    out = tmp_path / "nested" / "bench"
    quality.write_outputs(out, rows, quality.summarise(rows))
    with (out / "results.csv").open() as fh:
        results = list(csv.DictReader(fh))
    assert list(results[0]) == [
        "set",
        "instance",
        "method",
        "makespan",
        "reference",
        "gap",
        "seconds",
    ]
    assert len(results) == len(rows)
    mwkr = next(r for r in results if (r["instance"], r["method"]) == ("ta01", "mwkr"))
    assert math.isclose(float(mwkr["gap"]), 1491 / 1231 - 1)
    with (out / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert list(summary[0]) == [
        "set", "method", "instances", "mean_gap_pct", "max_gap_pct", "mean_ms", "wins",
    ]  # fmt: skip
    assert len(summary) == 2 * len(METHODS)
    png = (out / "gaps.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = quality.run(
        _args("--quick", "--model-dir", str(tmp_path / "nope"), "--out", str(tmp_path))
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "model file missing" in err and "nope" in err
    assert not (tmp_path / "results.csv").exists()


def _fake_model(scorer: FastScorer) -> LoadedModel:
    card = ModelCard("test-0", "0" * 64, "schema", "0.1", "2024-01-01T00:00:00Z")
    return LoadedModel(Path("fake/final_model.zip"), card, scorer)


def test_run_quick_taillard(
    scorer: FastScorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(quality, "load_model", lambda directory: _fake_model(scorer))
    args = _args("--quick", "--sets", "ta01-10", "--quiet", "--out", str(tmp_path))
    assert quality.run(args) == 0
    out = capsys.readouterr().out
    assert "ta01-10: 3 instances, gap vs best known" in out
    assert all(f"  {method} " in out for method in METHODS)
    assert "PPO beats the best single rule (mean gap): ta01-10: " in out
    assert {p.name for p in tmp_path.iterdir()} == {"results.csv", "summary.csv", "gaps.png"}


def test_invalid_ppo_schedule_exits_1(
    scorer: FastScorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(*_: Any) -> ValidationReport:
        return ValidationReport((Violation("overlap", "two at once", "J1", "J1-01"),), 1, 0, 0, 0)

    monkeypatch.setattr(quality, "load_model", lambda directory: _fake_model(scorer))
    monkeypatch.setattr(quality, "validate", broken)
    args = _args("--quick", "--sets", "ta01-10", "--quiet", "--out", str(tmp_path))
    assert quality.run(args) == 1
    err = capsys.readouterr().err
    assert "ta01: invalid PPO schedule (1 violations): overlap J1/J1-01: two at once" in err


def test_default_arguments() -> None:
    args = _args()
    assert args.sets == ["ta01-10", "ta71-80", "production", "classic170x10"]
    assert (args.production_count, args.production_seed, args.quick, args.quiet) == (
        20,
        0,
        False,
        False,
    )
    assert args.out == Path("out/benchmark")
    assert args.model_dir == DEFAULT_MODEL_DIR
    with pytest.raises(SystemExit):
        _args("--production-count", "-1")


def test_record_writes_the_evaluation_into_the_card(
    scorer: FastScorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(quality, "load_model", lambda directory: _fake_model(scorer))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    args = _args("--quick", "--sets", "ta01-10", "--quiet", "--record")
    args.out, args.model_dir = tmp_path / "out", model_dir
    assert quality.run(args) == 0
    card = ModelCard.read(model_dir)
    assert card.version == "test-0"
    evaluation = card.evaluation
    assert evaluation["command"].startswith("schedctl benchmark --sets ta01-10")
    ppo = evaluation["sets"]["ta01-10"][PPO]
    assert ppo["instances"] == 3 and ppo["mean_gap_pct"] > 0
    assert set(evaluation["sets"]["ta01-10"]) == set(METHODS)
    assert "recorded the evaluation" in capsys.readouterr().out


def test_grid_reports_every_cell_writes_its_files_and_caches_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobshop_scheduler.cli import main  # noqa: PLC0415

    model_dir = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    before = ModelCard.read(model_dir)
    argv = ["benchmark", "--grid", "6x4", "12x4:flow", "--production", "10", "--count", "2",
            "--reference-seconds", "0.2", "--cache", str(tmp_path / "refs"),
            "--out", str(tmp_path / "out"), "--quiet", "--record",
            "--model-dir", str(model_dir)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for cell in ("6x4", "12x4:flow", "prod10"):
        row = lines[cell]
        assert row[1] == "2"  # instances in the cell
        gaps = [float(x) for x in row[2 : 2 + len(METHODS)]]
        assert all(g >= 0 for g in gaps)  # a reference is never worse than a plan of this run
        assert row[-3] in RULES and row[-1] in ("yes", "NO")
    assert "PPO beats the best rule in" in out
    with (tmp_path / "out" / "grid.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 2 * len(METHODS)
    assert (tmp_path / "out" / "grid.png").stat().st_size > 0
    cached = sorted(p.name for p in (tmp_path / "refs").iterdir())
    assert len(cached) == 6 and "6x4-s100-200ms.json" in cached
    assert "12x4:flow-s101-200ms.json" in cached  # a family's cell has its own references
    card = ModelCard.read(model_dir)  # --record: the grid joins the card's evaluation
    grid = card.evaluation["grid"]
    assert grid["command"] == (
        "schedctl benchmark --grid 6x4 12x4:flow --production 10 --count 2 --seed 100 "
        "--reference-seconds 0.2"
    )
    assert set(grid["cells"]) == {"6x4", "12x4:flow", "prod10"}
    assert grid["cells"]["6x4"]["mean_gap_pct"][PPO] == float(lines["6x4"][2 + METHODS.index(PPO)])
    assert card.evaluation["sets"] == before.evaluation["sets"]  # the benchmark's entry stays


def test_a_paired_difference_and_its_standard_error() -> None:
    pairs = [compare.Pair("s", f"i{k}", 100, 100, c) for k, c in enumerate((90, 94, 96, 100))]
    found = compare.paired("s", pairs)
    assert (found.instances, found.shorter, found.longer) == (4, 3, 0)
    assert found.difference == pytest.approx(-0.05)
    assert found.standard_error == pytest.approx(0.041633 / 2, rel=1e-4)
    assert found.beyond_noise
    assert not compare.paired("s", pairs[2:]).beyond_noise  # -0.02 against 0.02


def test_each_mode_has_its_own_shop_defaults() -> None:
    comparing = _args("--compare", "elsewhere")
    search_quality.fill_defaults(comparing)
    assert (comparing.count, comparing.seed) == (100, 10_000)
    assert [str(s) for s in comparing.shapes] == list(search_quality.COMPARE_SHAPES)
    assert comparing.short_routes == list(search_quality.COMPARE_SHORT_ROUTES) == [20, 80]
    budgets = _args("--budgets", "0")
    search_quality.fill_defaults(budgets)
    assert (budgets.count, budgets.seed) == (5, 100)
    assert [str(s) for s in budgets.shapes] == list(search_quality.DEFAULT_SHAPES)
    assert budgets.production == list(search_quality.DEFAULT_PRODUCTION)
    given = _args("--compare", "elsewhere", "--count", "7", "--shapes", "6x6")
    search_quality.fill_defaults(given)
    assert (given.count, [str(s) for s in given.shapes]) == (7, ["6x6"])
    large = _args("--horizons", "170", "0", "--production")
    search_quality.fill_defaults(large)
    assert [str(s) for s in large.shapes] == list(search_quality.HORIZON_SHAPES)
    assert (large.horizons, large.production) == ([170, 0], [])
    assert large.short_routes == [] == budgets.short_routes  # none but --compare's


def test_short_route_shops_join_every_mode_by_job_count() -> None:
    given = _args("--compare", "elsewhere", "--shapes", "--production", "--taillard",
                  "--short-routes", "9", "12", "--count", "2")  # fmt: skip
    search_quality.fill_defaults(given)
    cases = search_quality.select_cases(given)
    assert [c.name for c in cases] == ["short9-s10000", "short9-s10001", "short12-s10000",
                                       "short12-s10001"]  # fmt: skip
    assert all(len(c.problem.jobs) == int(c.set_name[5:]) for c in cases)


def test_horizons_run_the_pass_at_each_horizon_and_the_legacy_rule(
    scorer: FastScorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobshop_scheduler.cli import main  # noqa: PLC0415

    monkeypatch.setattr(quality, "load_model", lambda directory: _fake_model(scorer))
    argv = ["benchmark", "--horizons", "3", "0", "--shapes", "8x4", "--production", "12",
            "--count", "2", "--quiet", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["set"][2:] == ["mwkr", "h3", "all"]
    with (tmp_path / "horizons.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows[:3]] == ["mwkr", "h3", "all"] and len(rows) == 12
    cases = search_quality.generated_cases([search_quality.parse_shape("8x4")], [12], 2, 100)
    by_case = [rows[k : k + 3] for k in range(0, len(rows), 3)]
    for case, (rule, narrow, every) in zip(cases, by_case, strict=True):
        cp = compile_problem(case.problem)
        assert int(rule["makespan"]) == makespan_of(cp, *dispatch_arrays(cp, "mwkr"))
        assert int(narrow["makespan"]) == greedy_schedule(cp, scorer, 3).makespan
        assert int(every["makespan"]) == greedy_schedule(cp, scorer).makespan
        assert int(every["lower_bound"]) == lower_bound(cp) <= int(every["makespan"])
    ratio = sum(int(r["makespan"]) / int(r["lower_bound"]) for r in rows[2:6:3]) / 2
    assert lines["8x4"][8] == f"{ratio:.4f}"  # the printed ratio of "all" on 8x4


def test_compare_runs_both_models_on_the_same_shops(
    scorer: FastScorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped model against untrained weights: paired on every instance, Taillard's
    against the best known makespan, and the untrained one longer beyond noise."""
    from jobshop_scheduler.cli import main  # noqa: PLC0415

    monkeypatch.setattr(compare, "load_model", lambda directory: _fake_model(scorer))
    argv = ["benchmark", "--compare", str(tmp_path / "candidate"), "--shapes", "8x8",
            "--count", "8", "--taillard", "ta01-10", "--production", "--short-routes", "--quiet",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["candidate"][1] == "test-0" and lines["ta01-10"][1] == "10"
    with (tmp_path / "out" / "compare.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18
    assert all(int(r["reference"]) == best_known(r["instance"]) for r in rows[:10])
    shops = rows[10:]
    mean = sum((int(r["candidate"]) - int(r["baseline"])) / int(r["reference"]) for r in shops)
    assert lines["8x8"][4] == f"{mean / 8 * 100:+.2f}"  # the printed difference, in % points
    assert "longer beyond noise on" in out and "ta01-10" in out.splitlines()[-2]


def test_compare_with_a_missing_model_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobshop_scheduler.cli import main  # noqa: PLC0415

    argv = ["benchmark", "--compare", str(tmp_path / "nope"), "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    assert "cannot load the --compare model" in capsys.readouterr().err
    assert not (tmp_path / "compare.csv").exists()


def test_the_anytime_benchmark_measures_the_services_answer(scorer: FastScorer) -> None:
    """`--budgets` runs `Planner.plan`, the service's path; budget 0 is the policy's pass alone."""
    problem = production_like(30, seed=4)
    model = _fake_model(scorer)
    greedy, _ = search_quality.run_search(problem, model, 0)
    assert greedy == greedy_schedule(compile_problem(problem), scorer).makespan
    served, _ = search_quality.run_search(problem, model, 100, iterations=300)
    plan = Planner(model).plan(problem, "ppo", 100, iterations=300)
    assert served == plan.schedule.makespan <= min(greedy, plan.baseline_makespan)
