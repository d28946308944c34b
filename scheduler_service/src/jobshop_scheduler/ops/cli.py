"""``schedctl verify-model``, ``backup-model`` and ``preflight``: flags, settings, exit codes.

Glue only: the checks live in ``model_checks``, ``backup`` and ``preflight``. Flags override
the settings (environment, ``.env``), which override the defaults; see docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobshop_scheduler import checklist
from jobshop_scheduler.checklist import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from jobshop_scheduler.data.cli import add_env_file
from jobshop_scheduler.data.settings import Settings, SettingsError, load_settings, with_overrides
from jobshop_scheduler.ops.backup import BackupError, backup_model
from jobshop_scheduler.ops.model_checks import ModelCheckOptions, verify_model
from jobshop_scheduler.ops.preflight import PreflightOptions, run_preflight

VERIFY_MODEL_HELP = (
    "Check the model in --model-dir: files present, sha256 equal to the card's, feature schema "
    "and code version compatible, the serving arrays load and reproduce SB3's recorded "
    "outputs, stable-baselines3 agrees with both (a warning when the train extra is not "
    "installed), schedules a sample request validly by itself, and a verified backup exists "
    "(a warning unless --require-backup)."
)
BACKUP_MODEL_HELP = (
    "Copy the model folder to BACKUP_DIR/<version>-<UTC time>/ with a SHA256SUMS, re-hashing "
    "every copied file; refuses a model that fails its own card."
)
PREFLIGHT_HELP = (
    "Check this host before deploying: CPU cores, RAM, free disk, Python and dependency "
    "imports, database reachability (a warning when not configured), model and snapshot "
    "present, log directory writable and not world-writable, API keys configured."
)


def _model_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        type=Path,
        help="final_model.zip + model_card.json (default: $SCHEDULER_MODEL_DIR, else "
        "models/full_production)",
    )


def _backup_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backup-dir",
        type=Path,
        help="backups folder (default: $SCHEDULER_MODEL_BACKUP_DIR, else models/backups)",
    )


def add_verify_model_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = VERIFY_MODEL_HELP, checklist.EXIT_CODES_HELP
    _model_dir(p)
    _backup_dir(p)
    add_env_file(p)
    p.add_argument(
        "--require-backup", action="store_true", help="a missing backup is a failure, not a warning"
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


def add_backup_model_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = BACKUP_MODEL_HELP, checklist.EXIT_CODES_HELP
    _model_dir(p)
    _backup_dir(p)
    add_env_file(p)


def add_preflight_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = PREFLIGHT_HELP, checklist.EXIT_CODES_HELP
    add_env_file(p)
    _model_dir(p)
    p.add_argument("--min-cores", type=int, help="CPU cores required (default: 4)")
    p.add_argument("--min-ram-gb", type=float, help="RAM required, GB (default: 16)")
    p.add_argument("--min-disk-gb", type=float, help="free disk required, GB (default: 10)")
    p.add_argument(
        "--disk-path", type=Path, default=Path("."), help="where to measure free disk (default: .)"
    )
    p.add_argument("--snapshot", type=Path, help="default: $SCHEDULER_SNAPSHOT")
    p.add_argument("--log-dir", type=Path, help="default: $SCHEDULER_LOG_DIR, else logs")
    p.add_argument("--keys", type=Path, help="API keys file (default: $SCHEDULER_API_KEYS_FILE)")
    p.add_argument("--skip-db", action="store_true", help="do not contact the database")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


def _settings(command: str, args: argparse.Namespace, **overrides: object) -> Settings | None:
    try:
        return with_overrides(load_settings(env_file=args.env_file), **overrides)
    except SettingsError as exc:
        print(f"schedctl {command}: {exc}", file=sys.stderr)
        return None


def _report(title: str, checks: list[checklist.Check], as_json: bool, **extra: object) -> int:
    if as_json:
        print(checklist.render_json(checks, **extra))
    else:
        print(checklist.render_table(title, checks))
    return checklist.exit_code(checks)


def run_verify_model(args: argparse.Namespace) -> int:
    settings = _settings("verify-model", args, model_dir=args.model_dir, backup_dir=args.backup_dir)
    if settings is None:
        return EXIT_USAGE
    options = ModelCheckOptions(settings.backup_dir, settings.batch_size, args.require_backup)
    checks = verify_model(settings.model_dir, options)
    return _report("verify-model", checks, args.json, model_dir=str(settings.model_dir))


def run_backup_model(args: argparse.Namespace) -> int:
    settings = _settings("backup-model", args, model_dir=args.model_dir, backup_dir=args.backup_dir)
    if settings is None:
        return EXIT_USAGE
    try:
        backup = backup_model(settings.model_dir, settings.backup_dir)
    except (BackupError, OSError) as exc:
        print(f"schedctl backup-model: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"backed up model {backup.version} to {backup.path}: {backup.files} file(s), "
        f"sha256 {backup.sha256} verified after copying"
    )
    return EXIT_OK


def run_preflight_command(args: argparse.Namespace) -> int:
    settings = _settings(
        "preflight", args, model_dir=args.model_dir, min_cpu_cores=args.min_cores,
        min_ram_gb=args.min_ram_gb, min_disk_gb=args.min_disk_gb, snapshot_path=args.snapshot,
        log_dir=args.log_dir, api_keys_file=args.keys,
    )  # fmt: skip
    if settings is None:
        return EXIT_USAGE
    checks = run_preflight(settings, PreflightOptions(args.disk_path, args.skip_db))
    return _report("preflight", checks, args.json)
