"""Shop families beyond Taillard's (`instances.families`): each has the structure its docstring
promises, a seed gives one shop, and training can draw and validate on them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.instances.families import FAMILIES, family_shop
from jobshop_scheduler.rl.config import ConfigError, SelfLabelConfig, load_config
from jobshop_scheduler.rl.sampling import random_taillard
from jobshop_scheduler.rl.self_label import mixture_instance, validation_grid

pytestmark = pytest.mark.unit


def routes(problem: Problem) -> list[list[int]]:
    return [[int(o.alternatives[0].machine_id[1:]) - 1 for o in j.operations] for j in problem.jobs]


def durations(problem: Problem) -> np.ndarray:
    return np.array([op.alternatives[0].duration for j in problem.jobs for op in j.operations])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_shop_is_a_classic_shop_its_seed_repeats(family: str) -> None:
    shop = family_shop(family, 12, 6, np.random.default_rng(3))
    assert len(shop.jobs) == 12 and len(shop.machines) == 6
    assert compile_problem(shop).is_classic
    for order in routes(shop):  # no machine twice in a job
        assert len(set(order)) == len(order) and set(order) <= set(range(6))
    assert shop == family_shop(family, 12, 6, np.random.default_rng(3))
    assert shop != family_shop(family, 12, 6, np.random.default_rng(4))


def test_each_family_has_its_structure() -> None:
    rng = np.random.default_rng(0)
    two_set = family_shop("two_set", 30, 10, rng)
    assert all(set(order[:5]) == set(range(5)) for order in routes(two_set))
    assert durations(two_set).max() > 100 and durations(two_set).min() >= 1
    flow = routes(family_shop("flow", 30, 10, rng))
    # one line order: each job differs from the first in at most two swaps (four positions)
    assert all(sum(a != b for a, b in zip(order, flow[0], strict=True)) <= 8 for order in flow)
    narrow = durations(family_shop("narrow", 30, 10, rng))
    assert narrow.min() >= 40 and narrow.max() <= 60
    partial = [len(order) for order in routes(family_shop("partial", 30, 10, rng))]
    assert min(partial) >= 5 and max(partial) <= 10 and len(set(partial)) > 1
    taillard = routes(family_shop("taillard", 30, 10, rng))
    assert all(sorted(order) == list(range(10)) for order in taillard)
    line = routes(family_shop("line", 30, 10, rng))
    assert all(order == line[0] for order in line) and sorted(line[0]) == list(range(10))
    for family, by_machine in (("job_correlated", False), ("machine_correlated", True)):
        shop = family_shop(family, 30, 10, rng)
        table = np.array([[op.alternatives[0].duration for op in j.operations] for j in shop.jobs])
        if by_machine:  # regroup each job's durations by machine
            table = np.take_along_axis(table, np.argsort(np.array(routes(shop)), axis=1), axis=1)
        spread = table.max(axis=0 if by_machine else 1) - table.min(axis=0 if by_machine else 1)
        assert spread.max() <= 20 and table.min() >= 1 and table.max() <= 99
        assert np.ptp(table.mean(axis=0 if by_machine else 1)) > 30  # the bases differ
    shop = family_shop("bottleneck", 30, 10, rng)
    per_machine = np.zeros(10)
    for order, job in zip(routes(shop), shop.jobs, strict=True):
        for machine, op in zip(order, job.operations, strict=True):
            per_machine[machine] += op.alternatives[0].duration
    slow = int(per_machine.argmax())  # the bottleneck carries about three times the others' load
    assert per_machine[slow] > 2 * np.delete(per_machine, slow).max()


def test_the_taillard_family_is_the_random_taillard_shop() -> None:
    assert family_shop("taillard", 9, 4, np.random.default_rng(8)) == random_taillard(
        np.random.default_rng(8), (9, 9), (4, 4)
    )


def test_an_unknown_family_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown shop family 'dmu'; known: taillard, two_set"):
        family_shop("dmu", 5, 5, np.random.default_rng(0))


def test_the_mixture_draws_every_family_and_taillard_alone_draws_as_before() -> None:
    config = SelfLabelConfig(flexible_share=0.0, families=FAMILIES, jobs=(6, 12), machines=(4, 6))
    rng = np.random.default_rng(5)
    names = {mixture_instance(config, rng).request_id.rstrip("0123456789x") for _ in range(60)}
    assert names == {"rand", *FAMILIES[1:]}
    # a recipe without `families` draws the shops it drew before the setting existed (the
    # figures are those of the commit before it)
    rng = np.random.default_rng(9)
    before = SelfLabelConfig(jobs=(6, 12), machines=(4, 6))
    shops = [mixture_instance(before, rng) for _ in range(6)]
    assert [(s.request_id, int(s.duration_matrix.sum())) for s in shops] == [
        ("rand12x6", 3785), ("rand12x6", 3386), ("rand7x4", 1388),
        ("production-like-n93-s1446612636", 104491), ("rand12x4", 2565), ("rand7x6", 1949),
    ]  # fmt: skip


def test_validation_shapes_may_name_a_family() -> None:
    config = SelfLabelConfig(validation_shapes=("8x4", "8x4:narrow"), validation_count=2)
    grid = validation_grid(config)
    assert [c.problem.request_id for c in grid["8x4:narrow"]] == ["narrow8x4"] * 2
    narrow = grid["8x4:narrow"][0].problem
    assert narrow.duration_matrix[narrow.eligible].min() >= 40


def test_short_share_draws_short_route_shops_and_validation_names_them() -> None:
    config = SelfLabelConfig(flexible_share=1.0, short_share=0.5, flexible_jobs=(5, 9))
    rng = np.random.default_rng(2)
    names = {mixture_instance(config, rng).request_id.split("-n")[0] for _ in range(30)}
    assert names == {"short-routes", "production-like"}
    grid = validation_grid(SelfLabelConfig(validation_shapes=("short12",), validation_count=2))
    assert [c.problem.request_id.split("-s")[0] for c in grid["short12"]] == [
        "short-routes-n12"
    ] * 2


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("short_share = 1.5", "short_share: 1.5 is not in [0, 1]"),
        ('validation_shapes = ["shorty"]', "or prodJOBS, or shortJOBS"),
        ('families = ["dmu"]', "families: 'dmu' is not one of 'taillard', 'two_set'"),
        ("families = []", "families: empty"),
        ('validation_shapes = ["8x4:dmu"]', "unknown shop family 'dmu' in '8x4:dmu'; known: taill"),
        ('validation_shapes = ["8x4:"]', "unknown shop family '' in '8x4:'"),
        ('validation_shapes = ["0x4"]', "validation_shapes: a shape needs at least 1x1"),
    ],
)
def test_families_are_checked(tmp_path: Path, setting: str, message: str) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"[ppo]\ntotal_timesteps = 0\n[self_label]\n{setting}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(recipe)
    recipe.write_text('[ppo]\ntotal_timesteps = 0\n[self_label]\nfamilies = ["flow", "taillard"]\n')
    assert load_config(recipe).self_label.families == ("flow", "taillard")
