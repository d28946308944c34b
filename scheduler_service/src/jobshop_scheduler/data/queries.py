"""The five SELECTs ingestion runs, and the columns each must return (in this order).

The defaults read the documented schema (``examples/db/schema.sql``). A plant with its own
tables sets ``SCHEDULER_DB_QUERY_*`` to queries (or views) that return the same columns; nothing
else about the database is assumed. Each query's ORDER BY fixes the order of jobs and of each
operation's alternatives in the snapshot, so the same data always gives the same checksum.
"""

from __future__ import annotations

from dataclasses import dataclass

MACHINES = "SELECT id FROM machines ORDER BY id"
JOBS = "SELECT id, release_time, due_date, priority FROM jobs ORDER BY id"
OPERATIONS = "SELECT job_id, id, seq FROM operations ORDER BY job_id, seq"
ALTERNATIVES = (
    "SELECT job_id, operation_id, machine_id, duration FROM operation_machines "
    "ORDER BY job_id, operation_id, machine_id"
)
JOB_COUNT = "SELECT COUNT(*) FROM jobs"

# Query name -> its columns, in order; each is explained in docs/data.md.
COLUMNS: dict[str, tuple[str, ...]] = {
    "machines": ("id",),
    "jobs": ("id", "release_time", "due_date", "priority"),
    "operations": ("job_id", "operation_id", "seq"),
    "alternatives": ("job_id", "operation_id", "machine_id", "duration"),
    "job_count": ("count",),
}


@dataclass(frozen=True)
class Queries:
    machines: str = MACHINES
    jobs: str = JOBS
    operations: str = OPERATIONS
    alternatives: str = ALTERNATIVES
    job_count: str = JOB_COUNT

    def tables(self) -> tuple[tuple[str, str], ...]:
        """(name, SQL) of the four row queries, in the order ingestion reads them."""
        return (
            ("machines", self.machines),
            ("jobs", self.jobs),
            ("operations", self.operations),
            ("alternatives", self.alternatives),
        )
