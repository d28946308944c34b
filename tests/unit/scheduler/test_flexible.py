"""The production-like generator: reproducible, within its ranges, and always a valid request."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobshop_scheduler.domain.codec import canonical_json
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import validate_problem
from jobshop_scheduler.instances.flexible import (
    FlexibleSpec,
    parse_flexible,
    production_like,
    short_routes,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def default() -> Problem:
    return production_like()


def test_same_seed_same_instance(default: Problem) -> None:
    again = production_like(170, seed=0)
    assert again == default
    assert canonical_json(again) == canonical_json(default)


def test_different_seeds_differ(default: Problem) -> None:
    assert production_like(170, seed=1) != default
    assert production_like(170, seed=1).request_id == "production-like-n170-s1"


def test_default_shape(default: Problem) -> None:
    assert len(default.jobs) == 170
    assert 10 <= len(default.machines) <= 20
    assert len(set(default.machines)) == len(default.machines)
    assert validate_problem(default) == []


def test_operations_and_alternatives_in_range(default: Problem) -> None:
    machines = set(default.machines)
    counts = set()
    for job in default.jobs:
        assert 10 <= len(job.operations) <= 20
        for op in job.operations:
            eligible = [a.machine_id for a in op.alternatives]
            counts.add(len(eligible))
            assert 1 <= len(eligible) <= 3
            assert len(set(eligible)) == len(eligible)
            assert set(eligible) <= machines
    assert counts == {1, 2, 3}  # every flexibility level actually occurs


def test_durations_are_correlated_across_machines(default: Problem) -> None:
    for job in default.jobs:
        for op in job.operations:
            durations = [a.duration for a in op.alternatives]
            fastest = min(durations)
            assert 5 <= fastest <= 60
            assert max(durations) <= math.floor(fastest * 1.5 + 0.5)


def test_releases_due_dates_and_priorities(default: Problem) -> None:
    releases = [job.release_time for job in default.jobs]
    assert min(releases) == 0
    assert len(set(releases)) > 50  # spread out, not all at once
    for job in default.jobs:
        work = sum(min(a.duration for a in op.alternatives) for op in job.operations)
        assert job.due_date is not None
        assert job.release_time + 1.5 * work <= job.due_date <= job.release_time + 3 * work + 1
        assert 1 <= job.priority <= 3
    assert {job.priority for job in default.jobs} == {1, 2, 3}


def test_ids_are_unique_and_readable(default: Problem) -> None:
    assert default.jobs[0].id == "J001"
    assert default.jobs[0].operations[0].id == "J001-01"
    assert len({job.id for job in default.jobs}) == 170
    assert default.machines[0] == "M01"


def test_custom_spec() -> None:
    spec = FlexibleSpec(machines=(3, 3), operations=(2, 4), eligible=(1, 1), duration=(7, 7))
    problem = production_like(5, seed=9, spec=spec)
    assert problem.machines == ("M01", "M02", "M03")
    assert all(2 <= len(job.operations) <= 4 for job in problem.jobs)
    assert {a.duration for j in problem.jobs for o in j.operations for a in o.alternatives} == {7}
    assert validate_problem(problem) == []


def test_more_eligible_machines_than_exist_is_capped() -> None:
    spec = FlexibleSpec(machines=(2, 2), eligible=(3, 3))
    problem = production_like(3, seed=0, spec=spec)
    assert all(len(op.alternatives) == 2 for job in problem.jobs for op in job.operations)
    assert validate_problem(problem) == []


@pytest.mark.parametrize(
    "spec",
    [
        FlexibleSpec(machines=(0, 3)),
        FlexibleSpec(operations=(5, 4)),
        FlexibleSpec(duration=(0, 10)),
        FlexibleSpec(slack=(0.5, 2.0)),
        FlexibleSpec(slowdown=0.9),
        FlexibleSpec(backlog=1.5),
    ],
)
def test_bad_specs_are_refused(spec: FlexibleSpec) -> None:
    with pytest.raises(ValueError, match=r"range|need"):
        production_like(3, spec=spec)


def test_at_least_one_job() -> None:
    with pytest.raises(ValueError, match="n_jobs"):
        production_like(0)


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 40), st.integers(0, 2**32))
def test_any_size_and_seed_is_valid(n_jobs: int, seed: int) -> None:
    problem = production_like(n_jobs, seed=seed)
    assert len(problem.jobs) == n_jobs
    assert validate_problem(problem) == []


def test_short_routes_vary_their_shape_and_keep_routes_short() -> None:
    shops = [short_routes(30, seed) for seed in range(40)]
    assert short_routes(30, 3) == shops[3]  # same seed, same shop
    lengths = {len(job.operations) for shop in shops for job in shop.jobs}
    assert lengths == {1, 2, 3, 4}
    assert {len(shop.machines) for shop in shops} <= set(range(3, 13))
    assert len({len(shop.machines) for shop in shops}) >= 5
    widest = max(
        len(op.alternatives) for shop in shops for job in shop.jobs for op in job.operations
    )
    assert widest > 3  # some operations may run on most machines: parallel stages
    assert all(validate_problem(shop) == [] for shop in shops)
    assert shops[0].request_id == "short-routes-n30-s0"
    with pytest.raises(ValueError, match="n_jobs must be at least 1"):
        short_routes(0)


def test_flexible_shop_names_give_their_generator_and_job_count() -> None:
    assert parse_flexible("prod50") == (production_like, 50)
    assert parse_flexible("short20") == (short_routes, 20)
    for name in ("prod", "prod0", "prod05", "shorty", "50x20", "short-20", "flex20"):
        assert parse_flexible(name) is None, name
