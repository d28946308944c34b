"""Database -> validated problem -> snapshot file, all or nothing.

The snapshot is written last, by ``codec.dump_snapshot`` (temp file in the same directory, fsync,
rename): until every row is read, assembled and passes the request rules, the previous snapshot
is not touched, so a database that dies mid-read or a row that breaks a rule leaves yesterday's
data in place for training and benchmarks instead of half of today's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from jobshop_scheduler.data.assemble import DataError, Tables, assemble
from jobshop_scheduler.data.database import ProgressFactory, read_tables
from jobshop_scheduler.data.locate import describe
from jobshop_scheduler.data.settings import Settings
from jobshop_scheduler.domain.codec import dump_snapshot
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.problem_rules import validate_problem

SHOWN_ERRORS = 10


class InvalidData(ValueError):
    """The rows read do not make a valid problem; nothing was written."""


@dataclass(frozen=True)
class IngestResult:
    path: Path
    sha256: str
    jobs: int
    operations: int
    machines: int
    rows: dict[str, int]
    seconds: float


def build_problem(tables: Tables, request_id: str, expect_jobs: int | None = None) -> Problem:
    """Assemble and validate; InvalidData lists the first violations by id."""
    try:
        problem = assemble(tables, request_id)
    except DataError as exc:
        raise InvalidData(str(exc)) from None
    errors = validate_problem(problem)
    if errors:
        lines = [describe(problem, e) for e in errors[:SHOWN_ERRORS]]
        more = (
            f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        )
        raise InvalidData(
            f"the data breaks {len(errors)} rule(s):\n" + "\n".join(f"  {x}" for x in lines) + more
        )
    if expect_jobs is not None and len(problem.jobs) != expect_jobs:
        raise InvalidData(f"read {len(problem.jobs)} jobs, expected {expect_jobs}")
    return problem


async def ingest(
    settings: Settings, progress: ProgressFactory | None = None, expect_jobs: int | None = None
) -> IngestResult:
    """Read, build, validate, then write ``settings.snapshot_path`` atomically.

    Raises DatabaseError, InvalidData or OSError; in every case the old snapshot is intact.
    """
    started = time.perf_counter()
    tables = await read_tables(settings, progress)
    problem = build_problem(tables, f"mariadb:{settings.db_name}", expect_jobs)
    path = settings.snapshot_path
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = dump_snapshot(problem, path)
    return IngestResult(
        path, sha, len(problem.jobs), problem.operation_count, len(problem.machines),
        tables.counts(), time.perf_counter() - started,
    )  # fmt: skip
