"""The dispatching window (`kernels.refresh`, `state.dispatch_window`): with window 1 the
candidates are the Giffler-Thompson conflict set, so any plan's machine order can be followed,
and a model carries its window from training to the serving arrays."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file

from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import makespan_of
from jobshop_scheduler.instances import load_taillard
from jobshop_scheduler.instances.classic import classic_shop
from jobshop_scheduler.instances.families import FAMILIES, family_shop, parse_shape
from jobshop_scheduler.instances.flexible import FlexibleSpec, production_like
from jobshop_scheduler.instances.taillard import taillard
from jobshop_scheduler.rl.config import ConfigError, load_config
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.features import (
    N_FEATURES,
    WINDOW_COLUMN,
    FeatureScales,
    job_features,
    scorer_view,
)
from jobshop_scheduler.rl.parity import check_parity
from jobshop_scheduler.rl.policy import JobScorer, JobScorerPolicy
from jobshop_scheduler.rl.self_label import mixture_instance
from jobshop_scheduler.rl.ship import _compare_weights, prove_serving_files
from jobshop_scheduler.rl.state import (
    LONG_SHOP,
    DispatchScheme,
    ShopState,
    dispatch_window,
    routing_alike,
)
from jobshop_scheduler.rl.train import (
    averaged_parameters,
    initial_parameters,
    scheme_changes,
    train,
)
from jobshop_scheduler.rl.weights import REFERENCE_NAME, WEIGHTS_NAME, ReferenceOutputs, load_scorer
from jobshop_scheduler.search.teacher import TabuTeacher

pytestmark = pytest.mark.unit


def model(
    window: float = 0.0,
    window_ratio: float = 0.0,
    seed: int = 0,
    long_shops: bool = False,
    window_alike: float = 0.0,
    *,
    window_narrowing: float = 0.0,
    window_widening: float = 0.0,
    alike_shops: bool = False,
    window_flexible: float = 0.0,
    window_flexible_ops: float = 0.0,
) -> MaskablePPO:
    env = JobShopEnv(
        problem=load_taillard("ta01"), max_jobs=16, scheme=DispatchScheme(window=window)
    )
    kwargs = {
        "window": window,
        "window_ratio": window_ratio,
        "long_shops": long_shops,
        "window_alike": window_alike,
        "window_narrowing": window_narrowing,
        "window_widening": window_widening,
        "alike_shops": alike_shops,
        "window_flexible": window_flexible,
        "window_flexible_ops": window_flexible_ops,
    }
    return MaskablePPO(
        JobScorerPolicy, env, policy_kwargs=kwargs, n_steps=64, seed=seed, device="cpu"
    )


def test_window_one_offers_the_conflict_set_of_the_earliest_completion() -> None:
    cp = compile_problem(load_taillard("ta01"))
    state, rng, widened = ShopState(cp, window=1.0), np.random.default_rng(0), 0
    while not state.done:
        jobs = np.flatnonzero(state.active)
        machines = np.array([state.machine_for(int(j))[0] for j in jobs])
        ends = np.array([state.est[j] + state.machine_for(int(j))[1] for j in jobs])
        first = int(np.argmin(ends))
        bound_for = jobs[machines == machines[first]]
        expected = bound_for[state.est[bound_for] < ends[first]]
        candidates = np.flatnonzero(state.candidates)
        assert candidates.tolist() == expected.tolist()
        widened += int((state.est[candidates] > state.t_star).any())
        state.dispatch(int(rng.choice(candidates)))
    assert widened > 0  # it does offer jobs that leave their machine idle a while


def test_window_one_can_follow_any_plan_and_non_delay_cannot() -> None:
    """The reason for the window: the expert's machine order is reachable (its makespan or
    better), where non-delay dispatching ends far from it."""
    cp = compile_problem(load_taillard("ta01"))
    mwkr = ShopState(cp)
    while not mwkr.done:
        mwkr.dispatch(int(np.flatnonzero(mwkr.candidates)[0]))
    machine, start = TabuTeacher(iterations_per_op=5)(cp, (mwkr.op_machine, mwkr.op_start), 0)
    expert = makespan_of(cp, machine, start)

    def follow(window: float) -> int:
        state = ShopState(cp, window)
        while not state.done:
            candidates = np.flatnonzero(state.candidates)
            state.dispatch(int(candidates[np.argmin(start[state.next_op[candidates]])]))
        return state.makespan

    assert follow(1.0) <= expert
    assert follow(0.0) > expert


def test_a_half_window_offers_a_subset_of_the_conflict_set() -> None:
    cp = compile_problem(taillard(20, 10, 3, 4))
    half, full = ShopState(cp, 0.5), ShopState(cp, 1.0)
    narrower = 0
    while not half.done:
        offered, allowed = np.flatnonzero(half.candidates), np.flatnonzero(full.candidates)
        assert set(offered) <= set(allowed) and len(offered) >= 1
        narrower += len(offered) < len(allowed)
        job = int(offered[-1])
        half.dispatch(job)
        full.dispatch(job)
    assert narrower > 0


def test_the_window_applies_to_classic_shops_up_to_the_ratio() -> None:
    square = compile_problem(taillard(20, 20, 1, 2))
    long = compile_problem(taillard(50, 20, 1, 2))
    flexible = compile_problem(production_like(20, seed=1))
    assert dispatch_window(square, 1.0, 2.0) == 1.0
    assert dispatch_window(long, 1.0, 2.0) == 0.0
    assert dispatch_window(long, 1.0, 0.0) == 1.0  # ratio 0: every classic shop
    assert dispatch_window(flexible, 1.0, 0.0) == 0.0
    assert dispatch_window(square, 0.0, 2.0) == 0.0
    # a model with a long-shop scorer marks the longer classic shops for it, and only those
    assert dispatch_window(long, 1.0, 2.0, long_scorer=True) == LONG_SHOP
    assert dispatch_window(square, 1.0, 2.0, long_scorer=True) == 1.0
    assert dispatch_window(flexible, 1.0, 2.0, long_scorer=True) == 0.0
    assert LONG_SHOP < 0.0  # dispatched non-delay, as every window at or below 0


def test_shops_with_fewer_jobs_per_machine_get_a_wider_window() -> None:
    rng = np.random.default_rng(4)

    def shop(jobs: int, machines: int) -> CompiledProblem:
        return compile_problem(family_shop("taillard", jobs, machines, rng))

    square, wide, at_ratio = shop(15, 15), shop(10, 20), shop(30, 20)
    # window x (ratio / jobs per machine) ** widening, at most 1
    assert dispatch_window(square, 0.5, 1.5, True, widening=1.2) == pytest.approx(0.5 * 1.5**1.2)
    assert dispatch_window(wide, 0.5, 1.5, True, widening=1.2) == 1.0
    assert dispatch_window(at_ratio, 0.5, 1.5, True, widening=1.2) == 0.5
    assert dispatch_window(square, 0.5, 1.5, True) == 0.5  # 0: off, as before
    # longer shops and flexible ones are not widened
    assert dispatch_window(shop(40, 10), 0.5, 1.5, True, widening=1.2) == LONG_SHOP
    flexible = compile_problem(production_like(20, seed=1))
    assert dispatch_window(flexible, 0.5, 1.5, True, widening=1.2) == 0.0
    scheme = DispatchScheme(0.5, 1.5, True, widening=1.2)
    assert scheme.window_for(square) == dispatch_window(square, 0.5, 1.5, True, widening=1.2)


def test_a_model_carries_window_widening_and_both_paths_widen_alike(tmp_path: Path) -> None:
    """A shop with fewer jobs than machines gets the wider window on SB3's path and on the
    fast path, and they agree on its states; a zip without the setting loads without it."""
    model(window=0.5, window_ratio=1.5, long_shops=True, window_widening=1.25).save(
        tmp_path / "m.zip"
    )
    loaded = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    scorer = FastScorer.from_state_dict(loaded.policy.state_dict())
    assert scorer.scheme == DispatchScheme(0.5, 1.5, True, widening=1.25)  # exact in float32
    extractor: JobScorer = loaded.policy.mlp_extractor  # type: ignore[assignment]
    assert extractor.scheme == scorer.scheme
    problem = taillard(12, 16, 3, 4)  # 0.75 jobs per machine: window 1
    cp = compile_problem(problem)
    assert extractor.window_for(cp) == scorer.window_for(cp) == 1.0
    report = check_parity(loaded, scorer, [problem], max_states=10**6)
    assert report.ok, str(report)
    assert model(window=0.5, window_ratio=1.5).policy.mlp_extractor.scheme.widening == 0.0


def test_flexible_shops_with_few_jobs_per_machine_get_the_window() -> None:
    small, loaded = (compile_problem(production_like(n, seed=3)) for n in (12, 170))
    per_machine = small.n_jobs / small.n_machines
    assert per_machine < 2.5 < loaded.n_jobs / loaded.n_machines
    scheme = DispatchScheme(0.5, 1.5, True, widening=1.0, flexible=2.5)
    assert scheme.window_for(small) == pytest.approx(min(1.0, 0.5 * 2.5 / per_machine))
    assert scheme.window_for(loaded) == 0.0  # a loaded flexible shop stays non-delay
    assert DispatchScheme(0.5, 1.5, True, widening=1.0).window_for(small) == 0.0  # 0: off
    # without widening the window itself, as on the classic shops
    assert DispatchScheme(0.5, 1.5, flexible=2.5).window_for(small) == 0.5


def test_flexible_shops_with_few_operations_per_machine_get_the_window() -> None:
    """Short routes: many jobs per machine, but few operations; production-like routes of 10-20
    operations at the same jobs per machine stay non-delay."""
    short = compile_problem(
        production_like(60, 4, FlexibleSpec(machines=(8, 8), operations=(1, 3)))
    )
    loaded = compile_problem(production_like(60, 4, FlexibleSpec(machines=(8, 8))))
    for cp in (short, loaded):
        assert cp.n_jobs / cp.n_machines > 2.5
    assert short.n_ops / short.n_machines <= 40 < loaded.n_ops / loaded.n_machines
    scheme = DispatchScheme(0.5, 1.5, True, widening=1.0, flexible=2.5, flexible_ops=40.0)
    assert scheme.window_for(short) == 0.5  # the model's own window, not widened
    assert scheme.window_for(loaded) == 0.0
    assert replace(scheme, flexible_ops=0.0).window_for(short) == 0.0  # 0: off
    small = compile_problem(production_like(12, seed=3))  # few jobs per machine: widened, as before
    assert scheme.window_for(small) == replace(scheme, flexible_ops=0.0).window_for(small) > 0.5
    classic = compile_problem(taillard(60, 10, 3, 4))  # 6 operations per machine: classic rules
    assert scheme.window_for(classic) == replace(scheme, flexible_ops=0.0).window_for(classic)


@pytest.mark.parametrize(
    ("settings", "problem", "window"),
    [
        ({"window_widening": 1.0, "window_flexible": 2.5}, production_like(12, seed=5), 0.0),
        (
            {"window_flexible": 2.5, "window_flexible_ops": 40.0},
            production_like(16, 2, FlexibleSpec(machines=(4, 4), operations=(1, 3))),
            0.5,
        ),
    ],
    ids=["few jobs per machine", "few operations per machine"],
)
def test_a_model_carries_its_flexible_window_and_both_paths_dispatch_alike(
    tmp_path: Path, settings: dict[str, float], problem: Problem, window: float
) -> None:
    """A flexible shop with few jobs (`window_flexible`, the window widened) or few operations
    (`window_flexible_ops`, the window itself) per machine gets the window on SB3's path and on
    the fast path, its states go to the window scorer on both, and they agree; a zip without
    the settings has neither."""
    model(window=0.5, window_ratio=1.5, **settings).save(tmp_path / "m.zip")
    loaded = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    scorer = FastScorer.from_state_dict(loaded.policy.state_dict())
    given = {field: settings[name] for field, name in DispatchScheme.BUFFERS if name in settings}
    assert scorer.scheme == DispatchScheme(0.5, 1.5, **given)
    extractor: JobScorer = loaded.policy.mlp_extractor  # type: ignore[assignment]
    assert extractor.scheme == scorer.scheme
    cp = compile_problem(problem)
    got = scorer.window_for(cp)
    assert extractor.window_for(cp) == got and (got == window if window else got > 0.5)
    report = check_parity(loaded, scorer, [problem], max_states=10**6)
    assert report.ok, str(report)
    state = greedy_schedule(cp, scorer)
    assert state.window == got and state.done
    plain = model(window=0.5, window_ratio=1.5).policy.mlp_extractor.scheme
    assert plain.flexible == plain.flexible_ops == 0.0


def test_a_dispatch_setting_older_serving_files_lack_must_be_0_in_the_zip() -> None:
    """Files written before a setting existed lack its tensor, which the fast path reads as 0:
    they still prove a zip that holds 0 there, and not one that holds anything else."""
    bias = {"mlp_extractor.score.2.bias": np.ones(1, np.float32)}
    unset = {**bias, "mlp_extractor.window_flexible": np.zeros((), np.float32)}
    assert _compare_weights(bias, unset) == []
    assert _compare_weights(bias, {**unset, "mlp_extractor.window_flexible": np.array(2.5)})
    assert _compare_weights(bias, {**bias, "mlp_extractor.other": np.zeros(())})


def test_routing_alike_tells_flow_two_set_and_random_routes_apart() -> None:
    rng = np.random.default_rng(3)
    alike = {f: routing_alike(compile_problem(family_shop(f, 30, 15, rng))) for f in FAMILIES}
    assert alike["taillard"] < 0.1 and alike["narrow"] < 0.1 and alike["partial"] < 0.2
    assert alike["flow"] > 0.4 and 0.7 < alike["two_set"] < 0.85
    assert alike["line"] == pytest.approx(1.0)
    assert max(alike[f] for f in ("job_correlated", "machine_correlated", "bottleneck")) < 0.1
    line = classic_shop([[0, 1, 2, 3]] * 6, [[5 + j] * 4 for j in range(6)], 4)  # one order
    assert routing_alike(compile_problem(line)) == pytest.approx(1.0)
    assert routing_alike(compile_problem(production_like(20, seed=2))) == 0.0  # not fixed


def test_long_shops_with_alike_routes_get_the_window() -> None:
    rng = np.random.default_rng(5)
    two_set = compile_problem(family_shop("two_set", 50, 10, rng))
    random_routes = compile_problem(family_shop("taillard", 50, 10, rng))
    square = compile_problem(family_shop("two_set", 10, 10, rng))
    flexible = compile_problem(production_like(50, seed=1))
    assert dispatch_window(two_set, 0.5, 1.5, True, alike=0.7) == 0.5
    assert dispatch_window(two_set, 0.5, 1.5, True) == LONG_SHOP  # 0: off, as before
    assert dispatch_window(two_set, 0.5, 1.5, False, alike=0.7) == 0.5
    assert dispatch_window(random_routes, 0.5, 1.5, True, alike=0.7) == LONG_SHOP
    assert dispatch_window(square, 0.5, 1.5, True, alike=0.7) == 0.5
    assert dispatch_window(flexible, 0.5, 1.5, True, alike=0.7) == 0.0
    assert dispatch_window(two_set, 0.0, 1.5, False, alike=0.7) == 0.0  # no window, no widening


def test_a_model_carries_window_alike_and_both_paths_route_alike(tmp_path: Path) -> None:
    """Through the zip to the fast path, and SB3's predict and the fast path agree on a long
    two-set shop, which such a model dispatches with its window scorer."""
    model(window=0.5, window_ratio=1.5, long_shops=True, window_alike=0.7).save(tmp_path / "m.zip")
    loaded = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    scorer = FastScorer.from_state_dict(loaded.policy.state_dict())
    assert scorer.scheme.alike == pytest.approx(0.7)
    problem = family_shop("two_set", 16, 4, np.random.default_rng(9))  # rows: 16 jobs
    cp = compile_problem(problem)
    extractor: JobScorer = loaded.policy.mlp_extractor  # type: ignore[assignment]
    assert extractor.window_for(cp) == scorer.window_for(cp) == 0.5
    report = check_parity(loaded, scorer, [problem], max_states=10**6)
    assert report.ok, str(report)
    assert model().policy.mlp_extractor.window_alike == 0.0  # older models: off


def test_a_model_carries_window_narrowing_and_both_paths_narrow_alike(tmp_path: Path) -> None:
    """A long shop with alike routes gets window x window_ratio / (jobs per machine) on SB3's
    path and on the fast path, and they agree on its states; square shops keep the window."""
    model(
        window=0.5, window_ratio=1.5, long_shops=True, window_alike=0.7, window_narrowing=1.0
    ).save(tmp_path / "m.zip")
    loaded = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    scorer = FastScorer.from_state_dict(loaded.policy.state_dict())
    assert scorer.scheme.narrowing == pytest.approx(1.0)
    extractor: JobScorer = loaded.policy.mlp_extractor  # type: ignore[assignment]
    problem = family_shop("two_set", 16, 4, np.random.default_rng(9))  # 4 jobs per machine
    cp = compile_problem(problem)
    assert extractor.window_for(cp) == pytest.approx(scorer.window_for(cp))
    assert scorer.window_for(cp) == pytest.approx(0.5 * 1.5 / 4)
    square = compile_problem(family_shop("two_set", 8, 8, np.random.default_rng(9)))
    assert extractor.window_for(square) == scorer.window_for(square) == 0.5
    report = check_parity(loaded, scorer, [problem], max_states=10**6)
    assert report.ok, str(report)
    assert model().policy.mlp_extractor.window_narrowing == 0.0  # older models: off


def test_the_long_shop_scorer_chooses_on_long_classic_shops_only() -> None:
    """Its states carry -1 in the window column and the fast path and SB3 both route them to
    it; changing its weights changes the long shop's plan and no other."""
    trained = model(window=1.0, window_ratio=2.0, long_shops=True)
    scorer = FastScorer.from_state_dict(trained.policy.state_dict())
    assert scorer.long_scorer is not None
    long, square = compile_problem(taillard(40, 5, 1, 2)), compile_problem(taillard(12, 12, 3, 4))
    flexible = compile_problem(production_like(30, seed=2))
    state = ShopState(long, scorer.window_for(long))
    table = job_features(state, FeatureScales(state), rows=long.n_jobs)
    assert bool((table[table[:, 0] > 0, WINDOW_COLUMN] == -1.0).all())

    extractor: JobScorer = trained.policy.mlp_extractor  # type: ignore[assignment]
    for cp in (long, square, flexible):  # the torch model and the fast path route alike
        assert extractor.window_for(cp) == scorer.window_for(cp)
    flipped = flip_last_layer(trained, extractor.long_score)
    same = same_plans(scorer, flipped, {"long": long, "square": square, "flexible": flexible})
    assert same == {"long": False, "square": True, "flexible": True}


def flip_last_layer(trained: MaskablePPO, score: torch.nn.Module | None) -> FastScorer:
    """The fast path of ``trained`` with ``score``'s last layer negated, in place: that scorer
    now prefers the opposite of what it did."""
    assert isinstance(score, torch.nn.Sequential)
    last = score[2]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.neg_()
        last.bias.neg_()
    return FastScorer.from_state_dict(trained.policy.state_dict())


def same_plans(
    scorer: FastScorer, other: FastScorer, shops: dict[str, CompiledProblem]
) -> dict[str, bool]:
    """Whether the two scorers' greedy passes place every operation alike, by shop."""
    return {
        name: np.array_equal(
            greedy_schedule(cp, scorer).op_start, greedy_schedule(cp, other).op_start
        )
        for name, cp in shops.items()
    }


def test_the_alike_shops_scorer_starts_as_the_window_scorer_and_chooses_on_them_only(
    tmp_path: Path,
) -> None:
    """`[ppo] alike_shops`: a fourth scorer for the long shops dispatched with a narrowed
    window. From a model without one it starts as a copy of the window scorer, so every plan
    stays; SB3's path and the fast path route those shops to it and agree on their states;
    changing its weights changes their plans and no other shop's."""
    shipped = {"window_ratio": 1.5, "long_shops": True, "window_alike": 0.2}
    model(window=0.5, window_narrowing=1.0, seed=8, **shipped).save(tmp_path / "before.zip")
    target = model(window=0.5, window_narrowing=1.0, seed=9, alike_shops=True, **shipped)
    params, _ = initial_parameters(target, tmp_path / "before.zip")
    target.set_parameters(params, exact_match=True, device="cpu")
    state = target.policy.state_dict()
    copied = [k for k in state if k.startswith("mlp_extractor.alike_")]
    assert len(copied) == 8
    assert all(torch.equal(state[k], state[k.replace("alike_", "window_")]) for k in copied)
    target.save(tmp_path / "alike.zip")
    loaded = MaskablePPO.load(tmp_path / "alike.zip", device="cpu")  # the argument travels
    scorer = FastScorer.from_state_dict(loaded.policy.state_dict())
    before = FastScorer.from_state_dict(
        MaskablePPO.load(tmp_path / "before.zip", device="cpu").policy.state_dict()
    )
    assert scorer.alike_scorer is not None and scorer.scheme.alike_scorer
    alike_problem = family_shop("two_set", 16, 4, np.random.default_rng(9))  # 4 jobs a machine
    shops = {
        "alike": compile_problem(alike_problem),
        "square": compile_problem(taillard(12, 12, 3, 4)),
        "long": compile_problem(taillard(40, 5, 1, 2)),
        "flexible": compile_problem(production_like(30, seed=2)),
    }
    routed = {
        name: scorer.scheme.is_alike_window(scorer.window_for(cp)) for name, cp in shops.items()
    }
    dispatching = ShopState(shops["alike"], scorer.window_for(shops["alike"]))
    table = job_features(dispatching, FeatureScales(dispatching), rows=shops["alike"].n_jobs)
    column = table[table[:, 0] > 0, WINDOW_COLUMN]
    assert bool((column == np.float32(0.5 * 1.5 / 4)).all())  # the window: it routes
    assert bool((scorer_view(table)[table[:, 0] > 0, WINDOW_COLUMN] == 1.0).all())  # its sign
    assert routed == {"alike": True, "square": False, "long": False, "flexible": False}
    assert all(same_plans(scorer, before, shops).values())  # a copy: the plans it came from
    report = check_parity(loaded, scorer, [alike_problem], max_states=10**6)
    assert report.ok, str(report)

    extractor: JobScorer = loaded.policy.mlp_extractor  # type: ignore[assignment]
    flipped = flip_last_layer(loaded, extractor.alike_score)
    same = same_plans(scorer, flipped, shops)
    assert same == {"alike": False, "square": True, "long": True, "flexible": True}
    assert check_parity(loaded, flipped, [alike_problem], max_states=10**6).ok
    with pytest.raises(ConfigError, match="alike shops' scorer; set \\[ppo\\] alike_shops"):
        initial_parameters(
            model(window=0.5, window_narrowing=1.0, **shipped), tmp_path / "alike.zip"
        )


def test_a_long_shop_scorer_starts_as_a_copy_of_the_first(tmp_path: Path) -> None:
    model(window=1.0, window_ratio=2.0, seed=2).save(tmp_path / "window.zip")
    target = model(window=1.0, window_ratio=2.0, seed=3, long_shops=True)
    params, _ = initial_parameters(target, tmp_path / "window.zip")
    target.set_parameters(params, exact_match=True, device="cpu")
    new = target.policy.state_dict()
    for key in [k for k in new if k.startswith("mlp_extractor.long_")]:
        first = key.replace("long_embed", "embed").replace("long_score", "score")
        assert torch.equal(new[key], new[first]), key
    target.save(tmp_path / "long.zip")  # and a model with one cannot lose it silently
    with pytest.raises(ConfigError, match="long-shop scorer; set \\[ppo\\] long_shops"):
        initial_parameters(model(window=1.0, window_ratio=2.0), tmp_path / "long.zip")


def test_new_feature_columns_get_zero_weights_in_every_scorer(tmp_path: Path) -> None:
    """A model saved before columns were appended starts out choosing as it did in all three
    scorers, not only the first."""
    model(window=0.5, window_ratio=1.5, seed=4, long_shops=True).save(tmp_path / "old.zip")
    data, loaded, _ = load_from_zip_file(str(tmp_path / "old.zip"), load_data=True)
    params: dict[str, Any] = dict(loaded)
    first_layers = [k for k in params["policy"] if k.endswith("embed.0.weight")]
    assert len(first_layers) == 3
    for key in first_layers:  # as if saved before the last two columns existed
        params["policy"][key] = params["policy"][key][:, :-2].clone()
    save_to_zip_file(tmp_path / "narrow.zip", data=data, params=params)

    target = model(window=0.5, window_ratio=1.5, seed=5, long_shops=True)
    fitted, columns = initial_parameters(target, tmp_path / "narrow.zip")
    assert columns == N_FEATURES - 2
    target.set_parameters(fitted, exact_match=True, device="cpu")
    new = target.policy.state_dict()
    for key in first_layers:
        assert torch.equal(new[key][:, :-2], params["policy"][key]), key
        assert not new[key][:, -2:].any(), key


def test_a_model_carries_its_window_to_the_fast_path_and_back_from_a_zip(tmp_path: Path) -> None:
    trained = model(window=1.0, window_ratio=2.0)
    trained.save(tmp_path / "m.zip")
    loaded = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    scorer = FastScorer.from_state_dict(loaded.policy.state_dict())
    assert (scorer.scheme.window, scorer.scheme.ratio) == (1.0, 2.0)
    square = compile_problem(taillard(15, 15, 5, 6))
    assert scorer.window_for(square) == 1.0
    assert greedy_schedule(square, scorer).makespan > 0


def test_a_model_from_before_the_window_loads_as_non_delay(tmp_path: Path) -> None:
    old = model()
    state = {k: v for k, v in old.policy.state_dict().items() if "window" not in k}
    assert not any("window" in k for k in state)
    fresh = model(window=0.0, seed=1)
    fresh.policy.load_state_dict(state)  # strict: the missing buffers take the defaults
    scorer = FastScorer.from_state_dict({k: v.numpy() for k, v in state.items()})
    assert scorer.scheme.window == 0.0 and float(fresh.policy.mlp_extractor.window) == 0.0


def test_the_config_not_the_init_model_sets_the_window(tmp_path: Path) -> None:
    model().save(tmp_path / "old.zip")  # a non-delay model
    target = model(window=1.0, window_ratio=2.0, seed=3)
    assert scheme_changes(target, tmp_path / "old.zip") == {
        "window": {"init": 0.0, "config": 1.0},
        "window_ratio": {"init": 0.0, "config": 2.0},
    }
    params, _ = initial_parameters(target, tmp_path / "old.zip")
    target.set_parameters(params, exact_match=True, device="cpu")
    extractor = target.policy.mlp_extractor
    assert float(extractor.window) == 1.0 and float(extractor.window_ratio) == 2.0
    old = MaskablePPO.load(tmp_path / "old.zip", device="cpu").policy.state_dict()
    new = target.policy.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if "window" not in k)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("window", 1.5, "is not in \\[0, 1\\]"),
        ("window_ratio", -1.0, "is below 0"),
        ("long_shops", "true", "needs window and window_ratio above 0"),
        ("window_alike", 1.5, "is not in \\[0, 1\\]"),
        ("window_alike", 0.7, "needs a window above 0"),
        ("window_narrowing", -1.0, "is below 0"),
        ("window_narrowing", 1.0, "needs window_alike above 0"),
        ("window_widening", -1.0, "is below 0"),
        ("window_widening", 1.0, "needs window and window_ratio above 0"),
        ("window_flexible", -1.0, "is below 0"),
        ("window_flexible", 2.5, "needs a window above 0"),
        ("window_flexible_ops", -1.0, "is below 0"),
        ("window_flexible_ops", 40.0, "needs a window above 0"),
        ("alike_shops", "true", "needs window_alike and window_narrowing above 0"),
    ],
)
def test_window_settings_are_checked(
    tmp_path: Path, key: str, value: float | str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[ppo]\ntotal_timesteps = 0\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=f"\\[ppo\\] {key}: .*{message}"):
        load_config(path)


def test_the_long_shop_recipe_loads() -> None:
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / "self_label_long.toml")
    as_shipped = load_config(recipe / "long_shops_as_shipped.toml")
    shipped = as_shipped.ppo
    assert config.ppo.long_shops and shipped.long_shops and config.self_label.trains == "long"
    assert config.ppo.window == shipped.window and as_shipped.self_label.steps == 0
    # training: every classic shop the mixture draws teaches the long-shop scorer ...
    assert config.self_label.teach_ratio <= config.self_label.ratio[0] < shipped.window_ratio
    assert config.ppo.window_ratio == shipped.window_ratio  # ... and the run saves it as shipped
    # ... and it is validated on the shops it serves as shipped
    shapes = [tuple(int(x) for x in s.split("x")) for s in config.self_label.validation_shapes]
    assert all(jobs > shipped.window_ratio * machines for jobs, machines in shapes)


@pytest.mark.parametrize(
    "name", ["self_label_window.toml", "self_label_window_families.toml", "self_label_rollout.toml"]
)
def test_the_window_recipes_load(name: str) -> None:
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / name)
    assert 0.0 < config.ppo.window <= 1.0 and config.ppo.window_ratio >= 1.0
    assert config.self_label.objective in {"expert", "rollout"}
    assert config.ppo.total_timesteps == 0
    assert config.self_label.ratio[1] <= config.ppo.window_ratio  # it learns the window's shops
    shapes = [parse_shape(shape) for shape in config.self_label.validation_shapes]
    assert all(s.jobs <= config.ppo.window_ratio * s.machines for s in shapes)


@pytest.mark.parametrize(
    "name", ["self_label_long_rollout.toml", "self_label_long_rollout_stage2.toml"]
)
def test_the_long_rollout_recipes_learn_and_validate_on_shops_the_long_scorer_serves(
    name: str,
) -> None:
    """The rollout stages of the long-shop scorer: rollout labels for that scorer, the shipped
    scheme, and every training and validation shop is one that scorer chooses on."""
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / name)
    teach, ppo = config.self_label, config.ppo
    assert teach.trains == "long" and teach.objective == "rollout" and ppo.long_shops
    assert teach.ratio[0] >= ppo.window_ratio and teach.flexible_share == 0.0
    rng = np.random.default_rng(0)
    shops = [compile_problem(family_shop(s.family, s.jobs, s.machines, rng))
             for s in map(parse_shape, teach.validation_shapes)]  # fmt: skip
    shops += [mixture_instance(teach, rng) for _ in range(20)]
    for cp in shops:
        window = dispatch_window(
            cp, ppo.window, ppo.window_ratio, True, ppo.window_alike,
            narrowing=ppo.window_narrowing,
        )  # fmt: skip
        assert window == LONG_SHOP, (cp.n_jobs, cp.n_machines, routing_alike(cp))


def test_the_route_column_recipe_teaches_the_window_scorer_on_the_shops_it_serves() -> None:
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / "self_label_window_columns.toml")
    teach, ppo = config.self_label, config.ppo
    assert teach.new_columns_only and teach.teacher_from_rules and teach.trains == "window"
    assert set(teach.families) == set(FAMILIES) and ppo.window_alike > 0.0
    rng = np.random.default_rng(0)
    for shape in map(parse_shape, teach.validation_shapes):  # long lines get the window too
        cp = compile_problem(family_shop(shape.family, shape.jobs, shape.machines, rng))
        window = dispatch_window(cp, ppo.window, ppo.window_ratio, True, ppo.window_alike)
        assert window == ppo.window, shape


def test_the_long_window_recipe_validates_on_shops_the_window_scorer_serves() -> None:
    """rl/self_label_window_long.toml teaches the window scorer on long alike shops too: its
    validation shapes, long ones included, are all dispatched with a (narrowed) window."""
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / "self_label_window_long.toml")
    teach, ppo = config.self_label, config.ppo
    assert teach.trains == "window" and teach.teacher_from_rules and teach.anchor > 0.0
    assert ppo.window_alike > 0.0 and ppo.window_narrowing > 0.0
    rng = np.random.default_rng(0)
    shapes = [parse_shape(shape) for shape in teach.validation_shapes]
    assert any(s.jobs > ppo.window_ratio * s.machines for s in shapes)
    for shape in shapes:
        cp = compile_problem(family_shop(shape.family, shape.jobs, shape.machines, rng))
        window = dispatch_window(
            cp, ppo.window, ppo.window_ratio, True, ppo.window_alike,
            narrowing=ppo.window_narrowing,
        )  # fmt: skip
        assert 0.0 < window <= ppo.window, shape


def test_the_shipped_model_gives_the_window_to_long_near_flow_shops_only() -> None:
    """The shipped `window_alike` (docs/benchmark.md, "Near flow shops get the window"): every
    long near flow shop is above it, and shops with random routes, small ones included where
    chance makes routes most alike, stay with the long-shop scorer."""
    scorer = load_scorer(DEFAULT_MODEL_DIR / WEIGHTS_NAME)
    scheme = scorer.scheme
    assert 0.0 < scheme.alike < 0.33 and scheme.narrowing > 0.0

    def window_of(family: str, jobs: int, machines: int, seed: int) -> float:
        cp = compile_problem(family_shop(family, jobs, machines, np.random.default_rng(seed)))
        return scorer.window_for(cp)

    for seed in range(10):
        for jobs, machines in [(40, 10), (50, 20), (100, 20)]:
            narrowed = scheme.window * (scheme.ratio * machines / jobs) ** scheme.narrowing
            assert window_of("flow", jobs, machines, seed) == pytest.approx(narrowed)
            assert window_of("two_set", jobs, machines, seed) == pytest.approx(narrowed)
            assert window_of("taillard", jobs, machines, seed) == LONG_SHOP
        for family in ("taillard", "partial", "bottleneck", "job_correlated"):
            assert window_of(family, 20, 5, seed) == LONG_SHOP
            assert window_of(family, 20, 10, seed) == LONG_SHOP


def test_the_shipped_model_dispatches_as_its_recipe_says() -> None:
    """The shipped serving weights carry the scheme of `rl/self_label_rollout_alike.toml`, the
    wider window of `rl/window_widening_as_shipped.toml` (docs/benchmark.md, "A wider window
    where machines see few jobs") and a scorer for the long alike shops: square shops 0.75,
    shops with 0.75 jobs per machine or fewer the whole active-schedule set, 1.5 unchanged; and
    the window on flexible shops of short routes (`rl/window_flexible_ops_as_shipped.toml`)."""
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / "self_label_rollout_alike.toml")
    assert config.self_label.trains == "alike"
    shipped = load_scorer(DEFAULT_MODEL_DIR / WEIGHTS_NAME).scheme
    assert shipped.alike_scorer
    assert_same_scheme(shipped, config.ppo.scheme)
    rng = np.random.default_rng(7)
    for (jobs, machines), window in [((15, 15), 0.75), ((12, 16), 1.0), ((30, 20), 0.5)]:
        cp = compile_problem(family_shop("taillard", jobs, machines, rng))
        assert shipped.window_for(cp) == pytest.approx(window)
    short = FlexibleSpec(machines=(8, 8), operations=(1, 3))  # 60 jobs, at most 180 operations
    assert shipped.window_for(compile_problem(production_like(60, 1, short))) == 0.5
    assert shipped.window_for(compile_problem(production_like(60, 1))) == 0.0


@pytest.mark.parametrize(
    "name", ["self_label_rollout_families.toml", "self_label_rollout_alike.toml"]
)
def test_a_recipe_that_starts_from_the_shipped_model_keeps_its_scheme(name: str) -> None:
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    shipped = load_scorer(DEFAULT_MODEL_DIR / WEIGHTS_NAME).scheme
    assert_same_scheme(shipped, load_config(recipe / name).ppo.scheme)


def assert_same_scheme(shipped: DispatchScheme, wanted: DispatchScheme) -> None:
    """A model's float32 buffers against a recipe's floats."""
    assert shipped.long_scorer == wanted.long_scorer
    assert shipped.alike_scorer == wanted.alike_scorer
    for field, _ in DispatchScheme.BUFFERS:
        assert getattr(shipped, field) == pytest.approx(getattr(wanted, field)), field


def test_training_from_a_model_says_which_dispatch_settings_the_config_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recipe that changes the --init model's scheme, on purpose or because it was written
    before a setting existed, says so on stderr and in the summary (the model card's
    `initialised_from`)."""
    shipped_before = {"window_ratio": 1.5, "long_shops": True, "window_alike": 0.2}
    model(window=0.5, window_narrowing=1.0, **shipped_before).save(tmp_path / "init.zip")
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / "window_widening_as_shipped.toml")
    summary = train(config, tmp_path / "out", quiet=True, init=tmp_path / "init.zip")
    changes = {"window_widening": {"init": 0.0, "config": 1.0}}
    assert summary["initialised_from"]["scheme_changes"] == changes
    assert "note: [ppo] window_widening = 1 where init.zip has 0;" in capsys.readouterr().err
    again = train(config, tmp_path / "again", quiet=True, init=tmp_path / "out/final_model.zip")
    assert again["initialised_from"]["scheme_changes"] == {}


def test_training_from_several_models_starts_from_their_average(tmp_path: Path) -> None:
    """`--init A --init B`: every weight is the mean of the two models' (a model soup), the
    config still sets the scheme, and the card names both sources."""
    shipped = {"window_ratio": 1.5, "long_shops": True, "window_alike": 0.2}
    models = [model(window=0.5, window_narrowing=1.0, seed=s, **shipped) for s in (6, 7)]
    for i, m in enumerate(models):
        m.save(tmp_path / f"m{i}.zip")
    paths = [tmp_path / "m0.zip", tmp_path / "m1.zip"]
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl"
    config = load_config(recipe / "window_widening_as_shipped.toml")
    summary = train(config, tmp_path / "out", quiet=True, init=paths)
    soup = MaskablePPO.load(tmp_path / "out/final_model.zip", device="cpu").policy.state_dict()
    a, b = (m.policy.state_dict() for m in models)
    weights = [k for k in soup if k.endswith(".weight")]
    assert len(weights) > 10 and not torch.equal(a[weights[0]], b[weights[0]])
    for key in weights:
        assert torch.allclose(soup[key], (a[key] + b[key]) / 2, atol=1e-6), key
    assert float(soup["mlp_extractor.window_widening"]) == 1.0  # the config's, not the models'
    sources = summary["initialised_from"]
    assert [s["file"] for s in sources["average_of"]] == [str(p) for p in paths]
    assert sources["scheme_changes"] == {"window_widening": {"init": 0.0, "config": 1.0}}

    twice, _ = averaged_parameters(models[0], [paths[0], paths[0]])  # a model with itself: itself
    assert all(torch.equal(twice["policy"][k], a[k]) for k in weights)
    data, loaded, _ = load_from_zip_file(str(paths[1]), load_data=True)
    params: dict[str, Any] = dict(loaded)
    bias = params["policy"]["mlp_extractor.score.2.bias"]  # as if the scorer had two outputs
    params["policy"]["mlp_extractor.score.2.bias"] = torch.cat([bias, bias])
    save_to_zip_file(tmp_path / "other.zip", data=data, params=params)
    with pytest.raises(ConfigError, match=r"other.zip: its tensors differ .* cannot average"):
        averaged_parameters(models[0], [paths[0], tmp_path / "other.zip"])


def test_serving_files_recorded_while_the_window_column_held_1_still_prove_the_model(
    model_copy: Path,
) -> None:
    """Serving files written before the `window` column held the window itself (it held 1):
    what the scorers read, the candidates, scores and choices are the same, so they still
    prove the model (`schedctl verify-model`). Files without a setting the zip holds above 0
    (`window_flexible`) do not."""
    assert prove_serving_files(model_copy) == []  # the shipped files as written
    recorded = ReferenceOutputs.read(model_copy / REFERENCE_NAME)
    assert any((s.table[:, WINDOW_COLUMN] % 1.0 > 0).any() for s in recorded.states)
    old = [replace(s, table=scorer_view(s.table)) for s in recorded.states]
    ReferenceOutputs(tuple(old), recorded.max_states).write(model_copy / REFERENCE_NAME)
    assert prove_serving_files(model_copy) == []
    arrays = dict(np.load(model_copy / WEIGHTS_NAME))
    assert float(arrays.pop("mlp_extractor.window_flexible")) == 2.5  # the shipped setting
    np.savez(model_copy / WEIGHTS_NAME, **arrays)
    found = prove_serving_files(model_copy)
    assert len(found) == 1 and "window_flexible" in found[0]
