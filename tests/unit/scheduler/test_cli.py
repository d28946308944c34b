"""`schedctl schedule --local`: the response JSON, policies, and precise errors on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobshop_scheduler.cli import main
from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.heuristics.dispatch import dispatch

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "requests" / "small.json"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["schedule", str(EXAMPLE), "--local", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("rule", ["spt", "mor", "mwkr", "fifo", "edd"])
def test_rule_response_matches_the_dispatcher(
    capsys: pytest.CaptureFixture[str], rule: str
) -> None:
    response = run_json(capsys, "--policy", rule)
    expected = dispatch(load_problem(EXAMPLE), rule)
    assert response["makespan"] == expected.makespan
    assert response["policy_used"] == rule
    assert response["completion_rate"] == 1.0
    assert response["unscheduled"] == []
    assignments = response["assignments"]
    assert isinstance(assignments, list)
    assert len(assignments) == len(expected.assignments)
    assert set(assignments[0]) == {"job_id", "operation_id", "machine_id", "start", "end"}


def test_ppo_response_carries_model_and_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    response = run_json(capsys, "--policy", "ppo")
    assert response["policy_used"] == "ppo"
    assert response["model_version"]
    assert response["baseline_makespan"] == dispatch(load_problem(EXAMPLE), "mwkr").makespan
    assert response["completion_rate"] == 1.0


def test_missing_model_falls_back_for_auto_and_fails_for_ppo(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    response = run_json(capsys, "--policy", "auto", "--model-dir", str(tmp_path))
    assert response["policy_used"] == "mwkr"
    args = ["schedule", str(EXAMPLE), "--local", "--policy", "ppo", "--model-dir", str(tmp_path)]
    code = main(args)
    assert code == 2
    assert "model file missing" in capsys.readouterr().err


def test_bad_field_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    request = json.loads(EXAMPLE.read_text())
    request["jobs"][1]["operations"][0]["alternatives"][0]["duration"] = -4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(request))
    assert main(["schedule", str(bad), "--local"]) == 2
    assert "jobs[1].operations[0].alternatives[0].duration" in capsys.readouterr().err


def test_unreadable_inputs_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["schedule", str(tmp_path / "nope.json"), "--local"]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["schedule", str(broken), "--local"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["schedule", str(EXAMPLE)]) == 2
    assert "--local" in capsys.readouterr().err


def test_fixed_iterations_search_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(capsys, "--iterations", "400", "--seed", "3")
    again = run_json(capsys, "--iterations", "400", "--seed", "3")
    assert first["assignments"] == again["assignments"]
    assert isinstance(first["makespan"], int) and isinstance(first["greedy_makespan"], int)
    assert isinstance(first["lower_bound"], int)
    assert first["lower_bound"] <= first["makespan"] <= first["greedy_makespan"]
    assert first["makespan"] <= dispatch(load_problem(EXAMPLE), "mwkr").makespan
    assert first["search_stage"] in ("greedy", "portfolio", "sampling", "tabu")


def test_budget_zero_is_the_greedy_pass_or_a_baseline_rules_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    response = run_json(capsys, "--time-budget-ms", "0")
    rules = [dispatch(load_problem(EXAMPLE), rule).makespan for rule in ("spt", "mor", "mwkr")]
    greedy = response["greedy_makespan"]
    assert isinstance(greedy, int)
    assert response["makespan"] == min(greedy, *rules)
    assert response["search_stage"] in ("greedy", "portfolio")
    assert response["search_iterations"] == 0


def test_a_budget_the_call_overran_says_no_search_ran(capsys: pytest.CaptureFixture[str]) -> None:
    large = EXAMPLE.with_name("production-170.json")  # its greedy pass alone takes over 1 ms
    assert main(["schedule", str(large), "--local", "--time-budget-ms", "1"]) == 0
    summary = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    latency = float(summary["latency"].split()[0])
    assert latency >= 1
    assert summary["search"].startswith(f"no time left: the call took {latency:.0f} ms of a 1 ms")
    assert summary["search"].endswith("0 tabu iterations")
    # the budget covers the greedy pass too: the rules placed what the policy had left
    match = re.fullmatch(
        r"cut at its deadline: rules placed (\d+) of (\d+) operations \(the shortest of "
        r"legacy mwkr, spt, mor that fit; a larger --time-budget-ms buys the whole pass\)",
        summary["greedy"],
    )
    assert match is not None, summary["greedy"]
    cut, operations = match.groups()
    assert 0 < int(cut) <= int(operations) == load_problem(large).operation_count
    assert main(["schedule", str(EXAMPLE), "--local", "--time-budget-ms", "300"]) == 0
    assert " won in 300 ms: greedy " in capsys.readouterr().out


def test_bad_budget_in_the_request_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = json.loads(EXAMPLE.read_text())
    doc["time_budget_ms"] = -5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["schedule", str(bad), "--local"]) == 2
    assert "time_budget_ms" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["schedule", str(EXAMPLE), "--local", "--time-budget-ms", "-1"])
    assert "--time-budget-ms: must be >= 0" in capsys.readouterr().err
