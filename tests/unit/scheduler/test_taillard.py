"""Taillard's generator must reproduce the published instances bit for bit."""

from __future__ import annotations

import pytest

from jobshop_scheduler.bench.search_quality import generated_cases
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances import (
    TAILLARD,
    best_known,
    load_taillard,
    taillard,
    taillard_arrays,
)
from jobshop_scheduler.instances.families import Shape, parse_shape
from jobshop_scheduler.instances.flexible import short_routes
from jobshop_scheduler.instances.taillard import _Lcg, generator_seed

pytestmark = pytest.mark.unit

# First job of ta01 as printed in Taillard (1993): durations, then 1-based machines.
TA01_JOB1_DURATIONS = [94, 66, 10, 53, 26, 15, 65, 82, 10, 27, 93, 92, 96, 70, 83]
TA01_JOB1_MACHINES = [7, 13, 5, 8, 4, 3, 11, 12, 9, 15, 10, 14, 6, 1, 2]


def _assert_classic_shape(problem: Problem, n_jobs: int, n_machines: int) -> None:
    """n jobs, each visiting every machine exactly once with a duration in 1..99."""
    assert len(problem.machines) == n_machines
    assert len(problem.jobs) == n_jobs
    for job in problem.jobs:
        assert len(job.operations) == n_machines
        assert all(len(op.alternatives) == 1 for op in job.operations)
        visited = [op.alternatives[0].machine_id for op in job.operations]
        assert sorted(visited) == sorted(problem.machines)
        assert all(1 <= op.alternatives[0].duration <= 99 for op in job.operations)


def test_lcg_is_park_miller_minimal_standard() -> None:
    rng = _Lcg(1)
    rng.unif(0, 0)
    assert rng.seed == 16807
    rng.unif(0, 0)
    assert rng.seed == 282475249
    with pytest.raises(ValueError, match="seed"):
        _Lcg(0)


def test_ta01_first_job_matches_the_paper() -> None:
    spec = TAILLARD["ta01"]
    durations, orders = taillard_arrays(15, 15, spec.time_seed, spec.machine_seed)
    assert durations[0] == TA01_JOB1_DURATIONS
    assert [k + 1 for k in orders[0]] == TA01_JOB1_MACHINES


def test_ta01_problem_ids_and_shape() -> None:
    problem = load_taillard("ta01")
    assert problem.request_id == "ta01"
    assert problem.machines == tuple(f"M{k}" for k in range(1, 16))
    assert [job.id for job in problem.jobs] == [f"J{j}" for j in range(1, 16)]
    first = problem.jobs[0]
    assert [op.id for op in first.operations] == [f"J1-{k}" for k in range(1, 16)]
    assert [op.alternatives[0].duration for op in first.operations] == TA01_JOB1_DURATIONS
    assert [op.alternatives[0].machine_id for op in first.operations] == [
        f"M{k}" for k in TA01_JOB1_MACHINES
    ]
    assert all(job.release_time == 0 and job.due_date is None for job in problem.jobs)
    _assert_classic_shape(problem, 15, 15)


@pytest.mark.parametrize("name", sorted(TAILLARD))
def test_every_registered_instance_generates(name: str) -> None:
    spec = TAILLARD[name]
    problem = load_taillard(name)
    _assert_classic_shape(problem, spec.n_jobs, spec.n_machines)
    assert best_known(name) == spec.best_known
    # A job's work is a lower bound on the makespan, and the best known is one.
    longest_job = max(sum(op.alternatives[0].duration for op in j.operations) for j in problem.jobs)
    assert longest_job <= spec.best_known


def test_registry_covers_the_two_families() -> None:
    small = [f"ta{k:02d}" for k in range(1, 11)]
    large = [f"ta{k}" for k in range(71, 81)]
    assert sorted(TAILLARD) == small + large
    assert {TAILLARD[n][:2] for n in small} == {(15, 15)}
    assert {TAILLARD[n][:2] for n in large} == {(100, 20)}


def test_generation_is_deterministic_and_seed_dependent() -> None:
    assert taillard(5, 4, 123, 456) == taillard(5, 4, 123, 456)
    assert taillard(5, 4, 123, 456) != taillard(5, 4, 124, 456)


def test_generator_seed_keeps_seeds_in_range_and_folds_the_rest() -> None:
    assert [generator_seed(s) for s in (1, 17, 2**31 - 2)] == [1, 17, 2**31 - 2]
    folded = [generator_seed(s) for s in (0, 2**31 - 1, 3_000_009_017, -5)]
    assert all(0 < s < 2**31 - 1 for s in folded)
    _Lcg(folded[2]).unif(1, 99)  # accepted by the generator


def test_generated_cases_accept_any_seed() -> None:
    """The benchmark's --seed may be any non-negative number: seed 5000 once overflowed."""
    small, large = generated_cases([(3, 2)], [], 1, 100), generated_cases([(3, 2)], [], 2, 5000)
    assert small[0].problem == taillard(3, 2, 100_000_317, 791_929)
    assert len(large) == 2 and large[0].problem != large[1].problem


def test_generated_cases_of_a_family_are_its_shops_and_seeded() -> None:
    cases = generated_cases([Shape(8, 4, "two_set"), (8, 4)], [], 2, 100)
    names = ["8x4:two_set-s100", "8x4:two_set-s101", "8x4-s100", "8x4-s101"]
    assert [c.name for c in cases] == names
    assert cases[0].set_name == "8x4:two_set" and cases[2].set_name == "8x4"
    for case in cases[:2]:  # the first half of the machines first
        first = [o.alternatives[0].machine_id for j in case.problem.jobs for o in j.operations[:2]]
        assert set(first) <= {"M1", "M2"}
    again = generated_cases([Shape(8, 4, "two_set")], [], 1, 100)
    assert again[0].problem == cases[0].problem and cases[0].problem != cases[1].problem


def test_generated_cases_add_short_route_shops_by_job_count() -> None:
    cases = generated_cases([], [6], 2, 300, short=[9])
    assert [c.name for c in cases] == ["prod6-s300", "prod6-s301", "short9-s300", "short9-s301"]
    assert cases[2].set_name == "short9" and cases[2].problem == short_routes(9, 300)
    assert max(len(j.operations) for c in cases[2:] for j in c.problem.jobs) <= 4


@pytest.mark.parametrize(
    ("text", "message"),
    [("50x20:dmu", "unknown shop family 'dmu'"), ("50by20", "a shape is JOBSxMACHINES[:FAMILY]"),
     ("0x5", "at least 1x1")],
)  # fmt: skip
def test_a_bad_benchmark_shape_exits_2_with_the_reason(
    text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobshop_scheduler.cli import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as exited:
        main(["benchmark", "--grid", text])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert parse_shape("50x20:Flow") == Shape(50, 20, "flow") and str(Shape(50, 20)) == "50x20"


def test_unknown_instance_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="ta01"):
        load_taillard("ta99")
    with pytest.raises(KeyError, match="unknown"):
        best_known("ft10")
