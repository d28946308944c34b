"""The route columns (`features.FEATURES` "next_machine_wait" to "routing_alike"): what they say
about the machine a job meets next, that they are 0 on flexible shops, and that a model from
before them serves the plans it served."""

from __future__ import annotations

import numpy as np
import pytest
from sb3_contrib import MaskablePPO

from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.instances import load_taillard
from jobshop_scheduler.instances.classic import classic_shop
from jobshop_scheduler.instances.families import family_shop
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.features import FEATURES, N_FEATURES, FeatureScales, job_features
from jobshop_scheduler.rl.policy import JobScorerPolicy
from jobshop_scheduler.rl.state import ShopState, routing_alike

pytestmark = pytest.mark.unit

WAIT, LOAD, SHARE, ALIKE = (FEATURES.index(name) for name in (
    "next_machine_wait", "next_machine_load", "next_machine_share", "routing_alike",
))  # fmt: skip


def test_route_columns_describe_the_machine_each_job_meets_next() -> None:
    # J1: M0 (4) then M2 (6); J2: M1 (2) then M2 (9); J3: M2 (5) alone
    shop = classic_shop([[0, 2], [1, 2], [2]], [[4, 6], [2, 9], [5]], 3)
    cp = compile_problem(shop)
    state = ShopState(cp)
    scales = FeatureScales(state)
    table = job_features(state, scales, cp.n_jobs)
    load = 6 + 9 + 5  # M2 carries every job: the bottleneck
    assert table[0, LOAD] == pytest.approx(load / scales.work)
    assert table[0, SHARE] == table[1, SHARE] == pytest.approx(1.0)
    # M2 is free at 0, so J1's next operation finds it idle for the 4 units J1 runs on M0
    assert table[0, WAIT] == pytest.approx(-4 / scales.duration)
    assert table[1, WAIT] == pytest.approx(-2 / scales.duration)
    assert table[2, [WAIT, LOAD, SHARE]].tolist() == [0.0, 0.0, 0.0]  # its last operation
    state.dispatch(2)  # J3 takes M2 until 5: J2 (ends on M1 at 2) would wait 3 for it
    table = job_features(state, scales, cp.n_jobs)
    assert table[1, WAIT] == pytest.approx(3 / scales.duration)
    assert table[1, LOAD] == pytest.approx((6 + 9) / scales.work)
    alike = routing_alike(cp)
    assert table[:2, ALIKE].tolist() == pytest.approx([max(alike, 1e-6)] * 2)


def test_a_bottleneck_machine_has_share_1_and_the_others_less() -> None:
    cp = compile_problem(family_shop("bottleneck", 20, 8, np.random.default_rng(2)))
    state = ShopState(cp)
    table = job_features(state, FeatureScales(state), cp.n_jobs)
    share = table[:, SHARE]
    assert share.max() == pytest.approx(1.0) and 0.0 < share.min() < 0.6
    assert table[:, ALIKE].min() > 0.0  # every row of a classic shop says it is one


def test_route_columns_are_zero_on_flexible_shops() -> None:
    cp = compile_problem(production_like(30, seed=3))
    state = ShopState(cp)
    scales = FeatureScales(state)
    for _ in range(40):
        table = job_features(state, scales, cp.n_jobs)
        assert not table[:, [WAIT, LOAD, SHARE, ALIKE]].any()
        state.dispatch(int(np.flatnonzero(state.candidates)[0]))


def test_a_model_from_before_the_route_columns_serves_the_same_plans() -> None:
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    model = MaskablePPO(JobScorerPolicy, env, seed=3, device="cpu")
    state = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    first = "mlp_extractor.embed.0.weight"
    state[first][:, -4:] = 0.0  # zero weights on the route columns ...
    padded = FastScorer.from_state_dict(state)
    state[first] = state[first][:, :-4].clone()  # ... are what a model without them has
    old = FastScorer.from_state_dict(state)
    assert old.w1.shape[0] == N_FEATURES and np.array_equal(old.w1, padded.w1)
    for cp in (compile_problem(load_taillard("ta02")), compile_problem(production_like(20, 1))):
        assert greedy_schedule(cp, old).makespan == greedy_schedule(cp, padded).makespan
