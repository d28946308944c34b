"""Rows -> Problem: the documented columns, NULL defaults, and every malformed row named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jobshop_scheduler.data.assemble import DataError, Tables, assemble
from jobshop_scheduler.data.ingest import InvalidData, build_problem
from jobshop_scheduler.data.seed import table_rows
from jobshop_scheduler.domain.model import Alternative
from jobshop_scheduler.instances.flexible import production_like

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_settings")]


def tables() -> Tables:
    return Tables(
        machines=[("M1",), ("M2",)],
        jobs=[("J2", 5, None, None), ("J1", None, Decimal(90), 2)],
        operations=[("J1", "J1-b", 2), ("J1", "J1-a", 1), ("J2", "J2-a", 1)],
        alternatives=[
            ("J1", "J1-a", "M1", 10),
            ("J1", "J1-a", "M2", 12),
            ("J1", "J1-b", "M2", 7),
            ("J2", "J2-a", "M1", 3),
        ],
    )


def test_rows_become_the_problem_in_query_order() -> None:
    problem = assemble(tables(), "r")
    assert problem.machines == ("M1", "M2")
    assert [j.id for j in problem.jobs] == ["J2", "J1"]  # the jobs query's ORDER BY rules
    j2, j1 = problem.jobs
    assert (j2.release_time, j2.due_date, j2.priority) == (5, None, 1)  # NULL priority -> 1
    assert (j1.release_time, j1.due_date, j1.priority) == (0, 90, 2)  # NULL release -> 0
    assert [op.id for op in j1.operations] == ["J1-a", "J1-b"]  # by seq, not row order
    assert j1.operations[0].alternatives == (Alternative("M1", 10), Alternative("M2", 12))


def test_seed_rows_round_trip_to_the_same_problem() -> None:
    problem = production_like(30, seed=3)
    rows = table_rows(problem)
    again = assemble(
        Tables(
            [(m,) for m, _ in rows["machines"]],
            rows["jobs"],
            rows["operations"],
            rows["operation_machines"],
        ),
        problem.request_id,
    )
    assert again == problem


@pytest.mark.parametrize(
    ("table", "index", "row", "message"),
    [
        ("machines", 1, (None,), "machines row 2: id is NULL"),
        ("machines", 0, ("M1", "extra"), "machines query must return 1 column(s) (id), got 2"),
        ("jobs", 1, ("J2", 0, None, 1), "jobs row 2: job 'J2' appears twice"),
        ("jobs", 0, ("J2", 1.5, None, 1), "jobs row 1: release_time must be a whole number"),
        ("jobs", 0, ("J2", 0, None, True), "priority must be an integer, got a boolean"),
        ("jobs", 0, ("  ", 0, None, 1), "jobs row 1: id is empty"),
        ("operations", 0, ("J9", "J9-a", 1), "operation 'J9-a' belongs to job 'J9', which was"),
        ("operations", 0, ("J1", "J1-x", 1), "job 'J1' has operations 'J1-x' and 'J1-a' at seq"),
        ("operations", 2, ("J2", "J2-a", None), "operations row 3: seq is NULL"),
        ("alternatives", 0, ("J1", "J1-z", "M1", 3), "operation 'J1-z' of job 'J1' was not read"),
        ("alternatives", 3, ("J2", "J2-a", "M1", "3"), "duration must be a whole number, got '3'"),
    ],
)
def test_malformed_rows_are_named(
    table: str, index: int, row: tuple[object, ...], message: str
) -> None:
    data = tables()
    getattr(data, table)[index] = row
    with pytest.raises(DataError) as err:
        assemble(data)
    assert message in str(err.value)


def test_rule_violations_name_jobs_operations_and_machines_by_id() -> None:
    data = tables()
    data.alternatives[2] = ("J1", "J1-b", "M7", 0)
    with pytest.raises(InvalidData) as err:
        build_problem(data, "r")
    text = str(err.value)
    assert "breaks 2 rule(s)" in text
    assert "job 'J1', operation 'J1-b', machine 'M7': machine_id unknown machine 'M7'" in text
    assert "job 'J1', operation 'J1-b', machine 'M7': duration must be positive, got 0" in text


def test_operation_without_alternatives_and_expected_count() -> None:
    data = tables()
    del data.alternatives[3]
    with pytest.raises(InvalidData, match=r"job 'J2', operation 'J2-a': alternatives at least one"):
        build_problem(data, "r")
    with pytest.raises(InvalidData, match="read 2 jobs, expected 3"):
        build_problem(tables(), "r", expect_jobs=3)
