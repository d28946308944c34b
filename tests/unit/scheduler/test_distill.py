"""Flexible-operation feature columns, the work-bound reward, widening an older model for
`--init`, and the distillation warm start (`rl.distill`)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file

from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.instances import load_taillard
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.config import ConfigError, DistillConfig, load_config
from jobshop_scheduler.rl.distill import candidate_kl, distill, speed_bonus, speed_bonus_t
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.features import FEATURES, FeatureScales, job_features
from jobshop_scheduler.rl.policy import JobScorerPolicy
from jobshop_scheduler.rl.state import ShopState
from jobshop_scheduler.rl.train import FIRST_LAYER, initial_parameters

pytestmark = pytest.mark.unit

SLOWDOWN, SPEED_LOSS, FAST_WAIT = (
    FEATURES.index(n) for n in ("slowdown", "speed_loss", "fast_wait")
)


def untrained(rows: int = 64, seed: int = 0) -> MaskablePPO:
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=rows)
    return MaskablePPO(JobScorerPolicy, env, n_steps=64, batch_size=64, seed=seed, device="cpu")


def test_flexible_columns_are_neutral_on_a_classic_shop() -> None:
    state = ShopState(compile_problem(load_taillard("ta01")))
    table = job_features(state, FeatureScales(state), 15)
    assert not table[:, SLOWDOWN].any()
    assert not table[:, SPEED_LOSS].any()
    assert not table[:, FAST_WAIT].any()


def test_flexible_columns_price_the_slower_free_machine() -> None:
    # J1 holds the fast machine M1 for 10; J2's operation runs in 10 on M1 or 30 on M2.
    fast = Operation("J1-01", (Alternative("M1", 10),))
    either = Operation("J2-01", (Alternative("M1", 10), Alternative("M2", 30)))
    problem = Problem(("M1", "M2"), (Job("J1", (fast,)), Job("J2", (either,))))
    state = ShopState(compile_problem(problem))
    scales = FeatureScales(state)
    state.dispatch(0)  # J1 on M1 for [0, 10): J2 can start now, but only on the slow M2
    row = job_features(state, scales, 2)[1]
    assert row[SPEED_LOSS] == pytest.approx(1 - 10 / 30)
    assert row[SLOWDOWN] == pytest.approx(20 / scales.duration)
    assert row[FAST_WAIT] == pytest.approx(10 / scales.duration)


def test_work_bound_is_a_lower_bound_that_ends_at_the_makespan() -> None:
    state, seen = ShopState(compile_problem(production_like(30, seed=3))), []
    while not state.done:
        seen.append(state.work_bound())
        state.dispatch(int(np.flatnonzero(state.candidates)[-1]))
    assert state.work_bound() == pytest.approx(state.makespan)
    assert max(seen) <= state.makespan
    assert seen[0] == pytest.approx(state.cp.op_min_duration.sum() / state.cp.n_machines)
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(seen))  # never decreases


def test_init_with_fewer_feature_columns_gets_zero_weights_for_the_new_ones(
    tmp_path: Path,
) -> None:
    old = untrained(seed=1)
    old.save(tmp_path / "old.zip")
    data, loaded, _ = load_from_zip_file(str(tmp_path / "old.zip"), load_data=True)
    params: dict[str, Any] = dict(loaded)
    narrow = params["policy"][FIRST_LAYER][:, :-3].clone()
    params["policy"][FIRST_LAYER] = narrow
    save_to_zip_file(tmp_path / "narrow.zip", data=data, params=params)

    new = untrained(seed=2)
    fitted, columns = initial_parameters(new, tmp_path / "narrow.zip")
    assert columns == len(FEATURES) - 3
    new.set_parameters(fitted, exact_match=True, device="cpu")
    weights = new.policy.state_dict()[FIRST_LAYER]
    assert torch.equal(weights[:, :-3], narrow)
    assert not weights[:, -3:].any()


def test_init_with_a_wider_first_layer_is_refused(tmp_path: Path) -> None:
    model = untrained()
    model.save(tmp_path / "m.zip")
    data, loaded, _ = load_from_zip_file(str(tmp_path / "m.zip"), load_data=True)
    params: dict[str, Any] = dict(loaded)
    weights = params["policy"][FIRST_LAYER]
    params["policy"][FIRST_LAYER] = torch.cat([weights, weights[:, :1]], dim=1)
    save_to_zip_file(tmp_path / "wide.zip", data=data, params=params)
    with pytest.raises(ValueError, match="does not fit"):
        initial_parameters(untrained(), tmp_path / "wide.zip")


def test_candidate_kl_is_zero_for_equal_logits_and_ignores_other_rows() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[True, True, True, False]])
    other = logits.clone()
    other[0, 3] = -50.0  # a non-candidate row's logit does not matter
    assert float(candidate_kl(logits, other, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(candidate_kl(logits, logits.flip(-1), mask)) > 0.1


def test_speed_bonus_is_zero_at_full_speed() -> None:
    assert float(speed_bonus(np.array([0.0]), 20.0)[0]) == 0.0  # no speed lost
    assert float(speed_bonus_t(torch.tensor([0.5]), 20.0)[0]) == pytest.approx(20 * np.log(0.5))


def test_distillation_fits_the_teacher(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = untrained(seed=4)
    config = DistillConfig(
        rounds=2, instances=3, epochs=2, flexible_share=1.0, flexible_jobs=(8, 12), seed=1
    )
    history = distill(model, config, quiet=True, evaluate=lambda scorer: 1.0)
    assert len(history) == 4
    assert history[-1]["kl"] < history[0]["kl"]
    assert history[-1]["states"] > history[1]["states"]  # the second round adds states
    assert all(row["ratio_to_best_rule"] == 1.0 for row in history)


def test_new_columns_only_keeps_every_other_weight_and_classic_choices() -> None:
    torch.manual_seed(0)
    model = untrained(seed=5)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    old_scorer = FastScorer.from_state_dict(before)
    config = DistillConfig(
        rounds=1, instances=3, epochs=2, flexible_share=1.0, flexible_jobs=(8, 12),
        new_columns_only=True, seed=2,
    )  # fmt: skip
    flexible = FEATURES.index("slowdown")  # a model from before the flexible columns
    distill(model, config, quiet=True, init_columns=flexible)
    after = model.policy.state_dict()
    for name, value in after.items():
        if name == FIRST_LAYER:
            assert torch.equal(value[:, :flexible], before[name][:, :flexible])
            assert not torch.equal(value[:, flexible:], before[name][:, flexible:])
        else:
            assert torch.equal(value, before[name]), name
    cp = compile_problem(load_taillard("ta02"))
    new_scorer = FastScorer.from_state_dict(after)
    assert greedy_schedule(cp, new_scorer).op_start.tolist() == (
        greedy_schedule(cp, old_scorer).op_start.tolist()
    )


def test_distill_section_parses_and_needs_known_keys(tmp_path: Path) -> None:
    recipe = """
[distill]
rounds = 2
flexible_jobs = [20, 170]
speed_weight = 10.0

[[curriculum]]
until = 1.0
jobs = [10, 20]
machines = [5, 10]
"""
    path = tmp_path / "r.toml"
    path.write_text(recipe)
    config = load_config(path)
    assert config.distill == dataclasses.replace(
        DistillConfig(), rounds=2, flexible_jobs=(20, 170), speed_weight=10.0
    )
    assert config.as_dict()["distill"]["rounds"] == 2
    path.write_text(recipe.replace("speed_weight", "speed_wieght"))
    with pytest.raises(ConfigError, match="speed_wieght"):
        load_config(path)
    assert load_config().distill.rounds == 0  # the shipped default recipe does not distil
