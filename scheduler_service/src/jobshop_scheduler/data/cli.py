"""``schedctl ingest`` and ``schedctl verify-data``: flags, settings, messages and exit codes.

Everything here is glue: the work is in ``ingest`` and ``integrity``. Messages go to stderr as
``schedctl <command>: ...``; they name the server and the step, never the password.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from jobshop_scheduler import checklist
from jobshop_scheduler.checklist import EXIT_DATABASE, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from jobshop_scheduler.data import integrity
from jobshop_scheduler.data.database import DatabaseError, count_jobs, tqdm_progress
from jobshop_scheduler.data.ingest import InvalidData, ingest
from jobshop_scheduler.data.ingest_metrics import record_run
from jobshop_scheduler.data.settings import Settings, SettingsError, load_settings, with_overrides

INGEST_HELP = (
    "Read machines, jobs, operations and their eligible machines from MariaDB (settings: "
    "SCHEDULER_DB_*, ./.env, SCHEDULER_DB_PASSWORD_FILE; docs/data.md), validate them and "
    "write the snapshot atomically with counts and a sha256. On any failure the previous "
    "snapshot is left untouched."
)
VERIFY_DATA_HELP = (
    "Check a snapshot's integrity, one row per rule: file, format, header counts, checksum, "
    "unique ids, machines exist, positive durations, every operation has an eligible machine, "
    "the other request rules, the expected job count and (--against-db) the database's."
)


def add_env_file(p: argparse.ArgumentParser) -> None:
    """``--env-file``, the flag every command reading the settings has."""
    p.add_argument(
        "--env-file", type=Path, help="settings file (default: $SCHEDULER_ENV_FILE, else ./.env)"
    )


def _common(p: argparse.ArgumentParser) -> None:
    add_env_file(p)
    p.add_argument(
        "--expect-jobs",
        type=int,
        metavar="N",
        help="the data must have exactly N jobs (default: $SCHEDULER_EXPECTED_JOBS)",
    )


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = INGEST_HELP, checklist.EXIT_CODES_HELP
    _common(p)
    p.add_argument(
        "--snapshot",
        type=Path,
        help="snapshot to write (default: $SCHEDULER_SNAPSHOT, else "
        "data/real_production_snapshot.json)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--metrics-file",
        type=Path,
        help="also write the outcome for Prometheus (text format, for node_exporter's textfile "
        "collector): scheduler_ingest_db_up, scheduler_ingest_db_errors_total, last run/success",
    )


def add_verify_data_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = VERIFY_DATA_HELP, checklist.EXIT_CODES_HELP
    p.add_argument(
        "snapshot",
        nargs="?",
        type=Path,
        help="snapshot file (default: $SCHEDULER_SNAPSHOT, else "
        "data/real_production_snapshot.json)",
    )
    _common(p)
    p.add_argument(
        "--against-db",
        action="store_true",
        help="also compare the job count with the database's (SCHEDULER_DB_QUERY_JOB_COUNT)",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return with_overrides(load_settings(env_file=args.env_file), **overrides)


def _fail(command: str, message: str, code: int) -> int:
    print(f"schedctl {command}: {message}", file=sys.stderr)
    return code


def _untouched(path: Path) -> str:
    if path.exists():
        return f"nothing written; the previous snapshot {path} is unchanged"
    return f"nothing written; there is still no snapshot at {path}"


def _record(args: argparse.Namespace, *, db_ok: bool, wrote: bool) -> None:
    """The run's outcome into ``--metrics-file``; a failure there never changes the exit code."""
    if args.metrics_file is None:
        return
    try:
        record_run(args.metrics_file, db_ok=db_ok, wrote=wrote)
    except OSError as exc:
        print(f"schedctl ingest: cannot write {args.metrics_file}: {exc}", file=sys.stderr)


def run_ingest(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args, snapshot_path=args.snapshot, expected_jobs=args.expect_jobs)
    except SettingsError as exc:
        return _fail("ingest", str(exc), EXIT_USAGE)
    path = settings.snapshot_path
    try:
        result = asyncio.run(ingest(settings, tqdm_progress(args.progress), settings.expected_jobs))
    except DatabaseError as exc:
        _record(args, db_ok=False, wrote=False)
        return _fail("ingest", f"{exc}\n{_untouched(path)}", EXIT_DATABASE)
    except InvalidData as exc:
        _record(args, db_ok=True, wrote=False)
        return _fail("ingest", f"{exc}\n{_untouched(path)}", EXIT_FAILED)
    except OSError as exc:
        _record(args, db_ok=True, wrote=False)
        message = f"cannot write {path}: {exc.strerror or exc}\n{_untouched(path)}"
        return _fail("ingest", message, EXIT_FAILED)
    _record(args, db_ok=True, wrote=True)
    rows = ", ".join(f"{n} {name}" for name, n in result.rows.items())
    print(
        f"wrote {result.path}: {result.jobs} jobs, {result.operations} operations, "
        f"{result.machines} machines, sha256 {result.sha256}\n"
        f"read {rows} rows from {settings.db_address} in {result.seconds:.1f} s"
    )
    return EXIT_OK


def run_verify_data(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args, snapshot_path=args.snapshot, expected_jobs=args.expect_jobs)
    except SettingsError as exc:
        return _fail("verify-data", str(exc), EXIT_USAGE)
    db_jobs: integrity.DbJobCount = None
    if args.against_db:
        try:
            db_jobs = asyncio.run(count_jobs(settings))
        except DatabaseError as exc:
            db_jobs = exc
    checks = integrity.verify_snapshot(settings.snapshot_path, settings.expected_jobs, db_jobs)
    if args.json:
        print(checklist.render_json(checks, snapshot=str(settings.snapshot_path)))
    else:
        print(checklist.render_table("verify-data", checks))
    return checklist.exit_code(checks)
