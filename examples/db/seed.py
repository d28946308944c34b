"""Seed the production schema (schema.sql beside this file) with production-like jobs.

    uv run python examples/db/seed.py --jobs 500 --seed 0 --reset

Connection settings are those of `schedctl ingest` (SCHEDULER_DB_*, .env, password file); the
user needs CREATE, DROP and INSERT on the database. See docs/data.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobshop_scheduler.data.seed import main

if __name__ == "__main__":
    sys.exit(main(default_schema=Path(__file__).with_name("schema.sql")))
