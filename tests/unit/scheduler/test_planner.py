"""The planner: policy choice, the horizon on large requests, validation and fallback kinds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import dispatch
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.planner import Planner, PolicyUnavailable
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.model_store import LoadedModel, ModelCard

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    """Untrained weights: the horizon and validation must hold whatever the policy does."""
    from sb3_contrib import MaskablePPO  # noqa: PLC0415 - torch only for this module

    from jobshop_scheduler.instances import load_taillard  # noqa: PLC0415
    from jobshop_scheduler.rl.env import JobShopEnv  # noqa: PLC0415
    from jobshop_scheduler.rl.policy import JobScorerPolicy  # noqa: PLC0415

    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=20)
    ppo = MaskablePPO(JobScorerPolicy, env, n_steps=64, batch_size=64, device="cpu", seed=0)
    card = ModelCard("test-1", "0" * 64, "schema", "0.1", "2026-01-01T00:00:00Z")
    return LoadedModel(
        Path("untrained.zip"), card, FastScorer.from_state_dict(ppo.policy.state_dict())
    )


def test_large_request_runs_in_one_pass_with_a_horizon_and_still_valid(
    model: LoadedModel,
) -> None:
    problem = production_like(45, seed=3)
    cp = compile_problem(problem)
    plan = Planner(model, batch_size=20).plan(problem, "ppo", 0)
    assert plan.batches == 3
    assert plan.policy_used == "ppo" and plan.fallback_kind == ""
    assert plan.report.ok and plan.report.completion_rate == 1.0
    assert len(plan.schedule.assignments) == problem.operation_count
    # one pass over the whole shop, the policy seeing 20 jobs at once
    assert plan.search.greedy_makespan == greedy_schedule(cp, model.scorer, 20).makespan
    whole = Planner(model, batch_size=170).plan(problem, "ppo", 0)
    assert whole.batches == 1 and whole.report.ok
    assert whole.search.greedy_makespan == greedy_schedule(cp, model.scorer).makespan
    # the search starts from the horizon's plan, and its rollouts keep the horizon
    searched = Planner(model, batch_size=20).plan(problem, "ppo", 1000, iterations=50)
    assert searched.search.greedy_makespan == plan.search.greedy_makespan
    assert searched.schedule.makespan <= plan.schedule.makespan and searched.report.ok


def test_heuristic_and_fallback_kinds(model: LoadedModel) -> None:
    problem = production_like(12, seed=2)
    plan = Planner(None).plan(problem, "auto")
    assert (plan.policy_used, plan.fallback_kind) == ("mwkr", "no_model")
    assert plan.schedule.makespan == dispatch(problem, "mwkr").makespan
    spt = Planner(model).plan(problem, "spt")
    assert (spt.policy_used, spt.fallback_kind) == ("spt", "")
    with pytest.raises(PolicyUnavailable):
        Planner(None).plan(problem, "ppo")


def test_policy_error_falls_back_to_the_legacy_rule(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise FloatingPointError("nan in logits")

    monkeypatch.setattr("jobshop_scheduler.planner.greedy_schedule", explode)
    plan = Planner(model).plan(production_like(10, seed=1), "auto")
    assert (plan.policy_used, plan.fallback_kind) == ("mwkr", "policy_error")
    assert "nan in logits" in plan.fallback_reason and plan.report.ok


def test_a_server_that_defaults_to_the_legacy_rule_answers_auto_with_it(
    model: LoadedModel,
) -> None:
    problem = production_like(30, seed=4)
    legacy = Planner(model, default_policy="mor")
    assert legacy.plan(problem, "auto").policy_used == "mor"
    assert legacy.plan(problem, "ppo").policy_used == "ppo"  # an explicit choice still holds
    assert Planner(model).plan(problem, "auto").policy_used == "ppo"
    with pytest.raises(ValueError, match="unknown default policy 'heuristic'"):
        Planner(model, default_policy="heuristic")


def test_without_time_to_search_the_answer_is_never_longer_than_a_baseline_rules(
    model: LoadedModel,
) -> None:
    """The call computes the legacy plan for its baseline anyway, and SPT's and MOR's cost a
    compiled pass each: with no search (budget 0), an untrained policy's longer greedy plans
    give way to the shortest of them, and its shorter ones stay."""
    stages, taken = set(), set()
    for seed in range(16):
        problem = production_like(8 + seed, seed=seed)
        plan = Planner(model).plan(problem, "ppo", time_budget_ms=0)
        greedy = greedy_schedule(compile_problem(problem), model.scorer).makespan
        rules = {rule: dispatch(problem, rule).makespan for rule in ("spt", "mor", "mwkr")}
        assert plan.policy_used == "ppo" and plan.report.ok
        assert plan.search.greedy_makespan == greedy
        shortest = min(greedy, *rules.values())
        assert plan.schedule.makespan == shortest == plan.response()["makespan"]
        assert plan.search.stage == ("portfolio" if shortest < greedy else "greedy")
        stages.add(plan.search.stage)
        taken |= {rule for rule, span in rules.items() if span == shortest < greedy}
    assert stages == {"greedy", "portfolio"}  # both ways were taken
    assert taken - {"mwkr"}  # and a rule other than the legacy one


def test_a_budget_too_short_for_the_greedy_pass_is_met_by_the_legacy_rule(
    model: LoadedModel,
) -> None:
    """The budget covers the greedy pass too: past its share the legacy rule places the rest
    (`greedy_schedule`), and the answer says how many operations it placed."""
    problem = production_like(300, seed=1)
    plan = Planner(model).plan(problem, "ppo", time_budget_ms=1)
    assert plan.policy_used == "ppo" and plan.fallback_kind == "" and plan.report.ok
    assert 0 < plan.search.greedy_cut_operations <= problem.operation_count
    assert plan.response()["greedy_cut_operations"] == plan.search.greedy_cut_operations
    assert plan.schedule.makespan <= plan.baseline_makespan
    whole = greedy_schedule(compile_problem(problem), model.scorer, 170).makespan
    # no budget and no client deadline: the pass takes what it takes
    free = Planner(model).plan(problem, "ppo", time_budget_ms=0)
    assert free.search.greedy_cut_operations == 0 and free.search.greedy_makespan == whole
    assert free.response()["greedy_cut_operations"] == 0
    # a fixed effort is reproducible, so no clock cuts it
    fixed = Planner(model).plan(problem, "ppo", time_budget_ms=1, iterations=5)
    assert fixed.search.greedy_cut_operations == 0 and fixed.search.greedy_makespan == whole


def test_a_client_deadline_cuts_the_greedy_pass_at_budget_0(model: LoadedModel) -> None:
    problem = production_like(300, seed=1)
    soon = time.monotonic() + 0.001
    plan = Planner(model).plan(problem, "ppo", time_budget_ms=0, deadline=soon)
    assert plan.search.greedy_cut_operations > 0 and plan.report.ok
    # nothing had time to run: the answer is the legacy rule's plan, no baseline rule after it
    assert plan.schedule.makespan == plan.baseline_makespan


def test_a_call_that_waited_for_a_planner_thread_loses_its_search_not_its_pass(
    model: LoadedModel,
) -> None:
    """The search's budget counts from the call's arrival, the pass's from when a planner
    thread takes the call: under load the plans stay the policy's, and only the search shrinks."""
    problem = production_like(60, seed=2)
    long_ago = time.perf_counter() - 10.0  # queued far longer than the budget
    plan = Planner(model).plan(problem, "ppo", time_budget_ms=300, received=long_ago)
    assert plan.search.greedy_cut_operations == 0 and plan.search.iterations == 0
    whole = greedy_schedule(compile_problem(problem), model.scorer).makespan
    assert plan.search.greedy_makespan == whole and plan.report.ok


def test_the_time_a_planner_thread_spent_before_planning_is_in_the_pass_budget(
    model: LoadedModel,
) -> None:
    """Converting and checking a request (`taken`: when the thread took the call) spend the
    pass's budget: a thread that spent it all before planning answers with the legacy rule."""
    problem = production_like(60, seed=2)
    spent = time.perf_counter() - 1.0  # a 300 ms budget, 1 s of conversion and checks
    plan = Planner(model).plan(problem, "ppo", time_budget_ms=300, received=spent, taken=spent)
    assert plan.search.greedy_cut_operations == problem.operation_count and plan.report.ok
    assert plan.schedule.makespan <= plan.baseline_makespan and plan.policy_used == "ppo"
