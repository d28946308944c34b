"""Fill the documented schema with production-like jobs (``examples/db/seed.py`` runs this).

The jobs come from ``instances.flexible.production_like``, the generator training and the
benchmarks use, so a seeded database ingests into a snapshot of the same shape as real plant
data, reproducibly from a seed. Connection settings are ingestion's own (``SCHEDULER_DB_*``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pymysql

from jobshop_scheduler.data.database import DRIVER_ERRORS, DatabaseError, connect, describe_failure
from jobshop_scheduler.data.settings import Settings, SettingsError, load_settings
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.flexible import production_like

TABLES = ("machines", "jobs", "operations", "operation_machines")  # insert order (foreign keys)
INSERTS = {
    "machines": "INSERT INTO machines (id, name) VALUES (%s, %s)",
    "jobs": "INSERT INTO jobs (id, release_time, due_date, priority) VALUES (%s, %s, %s, %s)",
    "operations": "INSERT INTO operations (job_id, id, seq) VALUES (%s, %s, %s)",
    "operation_machines": "INSERT INTO operation_machines (job_id, operation_id, machine_id, "
    "duration) VALUES (%s, %s, %s, %s)",
}
CHUNK = 2000


def table_rows(problem: Problem) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each table that describe ``problem`` (operations numbered from 1)."""
    rows: dict[str, list[tuple[Any, ...]]] = {
        "machines": [(m, f"machine {m}") for m in problem.machines],
        "jobs": [(j.id, j.release_time, j.due_date, j.priority) for j in problem.jobs],
        "operations": [],
        "operation_machines": [],
    }
    for job in problem.jobs:
        for seq, op in enumerate(job.operations, start=1):
            rows["operations"].append((job.id, op.id, seq))
            rows["operation_machines"] += [
                (job.id, op.id, a.machine_id, a.duration) for a in op.alternatives
            ]
    return rows


def statements(ddl: str) -> list[str]:
    """The statements of a DDL script: ``--`` comments dropped, split on ``;``."""
    text = re.sub(r"--[^\n]*", "", ddl)
    return [s.strip() for s in text.split(";") if s.strip()]


async def seed(
    settings: Settings, problem: Problem, ddl: str | None = None, reset: bool = False
) -> dict[str, int]:
    """Create the schema (when ``ddl`` is given), empty it if ``reset``, insert ``problem``."""
    rows = table_rows(problem)
    async with connect(settings) as conn:
        try:
            async with conn.cursor() as cur:
                if reset:
                    with warnings.catch_warnings():  # "Unknown table" for those not there yet
                        warnings.simplefilter("ignore", pymysql.Warning)
                        for table in reversed(TABLES):
                            await cur.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in statements(ddl or ""):
                    await cur.execute(statement)
                for table in TABLES:
                    for k in range(0, len(rows[table]), CHUNK):
                        await cur.executemany(INSERTS[table], rows[table][k : k + CHUNK])
            await conn.commit()
        except DRIVER_ERRORS as exc:
            raise describe_failure(exc, settings, "seeding") from None
    return {table: len(r) for table, r in rows.items()}


def main(argv: list[str] | None = None, default_schema: Path | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Seed the production schema with production-like jobs (SCHEDULER_DB_* "
        "settings, as for schedctl ingest)."
    )
    parser.add_argument("--jobs", type=int, default=500, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--schema", type=Path, default=default_schema, help="DDL to run first")
    parser.add_argument("--reset", action="store_true", help="drop the four tables first")
    parser.add_argument("--env-file", type=Path, help="settings file (default: ./.env)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
        ddl = args.schema.read_text(encoding="utf-8") if args.schema else None
        problem = production_like(args.jobs, seed=args.seed)
        counts = asyncio.run(seed(settings, problem, ddl, args.reset))
    except (SettingsError, DatabaseError, OSError, ValueError) as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, DatabaseError) else 2
    print(f"seeded {settings.db_address}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0
