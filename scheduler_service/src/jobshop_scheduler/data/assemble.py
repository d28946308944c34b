"""Database rows -> a domain ``Problem``; pure, so every malformed row case is testable offline.

Only what a Problem cannot even represent is refused here (a NULL id, a fractional time, an
operation of a job that was not read, two operations at one position): the message names the
query, the row number and the ids. Everything representable but wrong (unknown machines,
durations <= 0, operations without an eligible machine) is left to ``problem_rules``, the same
rules every request is held to, so ingestion and the gRPC server cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from jobshop_scheduler.data.queries import COLUMNS
from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem

Row = tuple[Any, ...]


class DataError(ValueError):
    """A row that cannot become part of a problem; the message names query, row and ids."""


@dataclass
class Tables:
    """The rows of the four queries, as read (see ``queries.COLUMNS`` for their columns)."""

    machines: list[Row] = field(default_factory=list)
    jobs: list[Row] = field(default_factory=list)
    operations: list[Row] = field(default_factory=list)
    alternatives: list[Row] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        names = ("machines", "jobs", "operations", "alternatives")
        return {name: len(getattr(self, name)) for name in names}


def _where(query: str, number: int) -> str:
    return f"{query} row {number}"


def _id(value: object, where: str, column: str) -> str:
    if value is None:
        raise DataError(f"{where}: {column} is NULL")
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"{where}: {column} must be text or an integer, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise DataError(f"{where}: {column} is empty")
    return text


def _int(value: object, where: str, column: str) -> int:
    if value is None:
        raise DataError(f"{where}: {column} is NULL")
    if isinstance(value, bool):
        raise DataError(f"{where}: {column} must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal | float) and math.isfinite(value) and value == int(value):
        return int(value)
    raise DataError(f"{where}: {column} must be a whole number, got {value!r}")


def _int_or(value: object, where: str, column: str, default: int) -> int:
    """An optional integer column: NULL means the request format's default."""
    return default if value is None else _int(value, where, column)


def _check_width(query: str, rows: Sequence[Row]) -> None:
    expected = COLUMNS[query]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(expected):
            raise DataError(
                f"{_where(query, number)}: the {query} query must return {len(expected)} "
                f"column(s) ({', '.join(expected)}), got {len(row)}"
            )


def _job_headers(rows: Sequence[Row]) -> dict[str, tuple[int, int | None, int]]:
    """job id -> (release, due, priority), in query order; NULL release 0, priority 1."""
    headers: dict[str, tuple[int, int | None, int]] = {}
    for number, (job_id, release, due, priority) in enumerate(rows, start=1):
        where = _where("jobs", number)
        key = _id(job_id, where, "id")
        if key in headers:
            raise DataError(f"{where}: job {key!r} appears twice")
        headers[key] = (
            _int_or(release, where, "release_time", 0),
            None if due is None else _int(due, where, "due_date"),
            _int_or(priority, where, "priority", 1),
        )
    return headers


def _operation_order(
    rows: Sequence[Row], jobs: dict[str, tuple[int, int | None, int]]
) -> dict[str, list[tuple[int, str]]]:
    """job id -> [(seq, operation id)] sorted by seq."""
    chains: dict[str, dict[int, str]] = {job: {} for job in jobs}
    for number, (job_id, op_id, seq) in enumerate(rows, start=1):
        where = _where("operations", number)
        job, op = _id(job_id, where, "job_id"), _id(op_id, where, "operation_id")
        position = _int(seq, where, "seq")
        if job not in chains:
            raise DataError(f"{where}: operation {op!r} belongs to job {job!r}, which was not read")
        if position in chains[job]:
            other = chains[job][position]
            raise DataError(
                f"{where}: job {job!r} has operations {other!r} and {op!r} at seq {seq}"
            )
        chains[job][position] = op
    return {job: sorted(chain.items()) for job, chain in chains.items()}


def _alternatives(
    rows: Sequence[Row], chains: dict[str, list[tuple[int, str]]]
) -> dict[tuple[str, str], list[Alternative]]:
    alts: dict[tuple[str, str], list[Alternative]] = {
        (job, op): [] for job, chain in chains.items() for _, op in chain
    }
    for number, (job_id, op_id, machine_id, duration) in enumerate(rows, start=1):
        where = _where("alternatives", number)
        key = (_id(job_id, where, "job_id"), _id(op_id, where, "operation_id"))
        if key not in alts:
            raise DataError(f"{where}: operation {key[1]!r} of job {key[0]!r} was not read")
        machine = _id(machine_id, where, "machine_id")
        alts[key].append(Alternative(machine, _int(duration, where, "duration")))
    return alts


def assemble(tables: Tables, request_id: str = "") -> Problem:
    """The problem the rows describe, jobs in the jobs query's order; DataError if malformed."""
    for query in ("machines", "jobs", "operations", "alternatives"):
        _check_width(query, getattr(tables, query))
    machines = tuple(
        _id(row[0], _where("machines", n), "id") for n, row in enumerate(tables.machines, start=1)
    )
    headers = _job_headers(tables.jobs)
    chains = _operation_order(tables.operations, headers)
    alts = _alternatives(tables.alternatives, chains)
    jobs = tuple(
        Job(
            id=job,
            operations=tuple(Operation(op, tuple(alts[job, op])) for _, op in chains[job]),
            release_time=release,
            due_date=due,
            priority=priority,
        )
        for job, (release, due, priority) in headers.items()
    )
    return Problem(machines, jobs, request_id)
