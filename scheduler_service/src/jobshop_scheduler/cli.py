"""`schedctl`: the scheduler's command line.

Exit codes: 0 success, 1 the work failed (e.g. an invalid schedule), 2 bad input or a missing
prerequisite (with a message naming the field or file).

Each subcommand lives in its own module, imported only when that subcommand runs or shows its
own ``--help``: ``schedctl --help`` imports nothing but argparse, ``schedctl serve`` never
imports the benchmark's plotting, and nothing on the serving path imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jobshop_scheduler import __version__
from jobshop_scheduler.command_error import CliError
from jobshop_scheduler.kernel_cache import seed_kernel_cache

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """Where a subcommand's flags and handler live, and its one-line help."""

    module: str
    help: str
    add_arguments: str = "add_arguments"
    run: str = "run"


COMMANDS: dict[str, Command] = {
    "schedule": Command(
        "jobshop_scheduler.schedule_cli",
        "schedule a request file, in-process (--local) or on a server (--target)",
    ),
    "serve": Command("jobshop_scheduler.service.serve_cli", "run the gRPC scheduler server"),
    "health": Command(
        "jobshop_scheduler.schedule_cli",
        "ask a server whether it is SERVING (exit 0) or not (exit 1)",
        "add_health_arguments",
        "run_health",
    ),
    "train": Command(
        "jobshop_scheduler.ops.train_cli",
        "train a policy (PPO, distillation, self-labelling) and write its card (train extra)",
    ),
    "export-model": Command(
        "jobshop_scheduler.ops.train_cli",
        "write a model's serving files (arrays, SB3's recorded outputs) and card (train extra)",
        "add_export_arguments",
        "run_export",
    ),
    "benchmark": Command(
        "jobshop_scheduler.bench.quality",
        "PPO vs the legacy rules on Taillard and production-like sets",
    ),
    "bench-latency": Command(
        "jobshop_scheduler.bench.latency",
        "Schedule latency and throughput over real gRPC, by size, policy and concurrency",
    ),
    "bench-startup": Command(
        "jobshop_scheduler.bench.startup",
        "cold-start figures: --help, schedule --local, serve to SERVING, first answer",
    ),
    "soak": Command(
        "jobshop_scheduler.bench.soak",
        "drive a server at concurrency 8 for 10 minutes; FAIL on errors or memory growth",
    ),
    "keygen": Command(
        "jobshop_scheduler.service.keys_cli",
        "generate an API key; only its hash goes to the keys file",
    ),
    "ingest": Command(
        "jobshop_scheduler.data.cli",
        "read production data from MariaDB into a validated snapshot",
        "add_ingest_arguments",
        "run_ingest",
    ),
    "verify-data": Command(
        "jobshop_scheduler.data.cli",
        "check a snapshot's integrity rule by rule (table or --json)",
        "add_verify_data_arguments",
        "run_verify_data",
    ),
    "verify-model": Command(
        "jobshop_scheduler.ops.cli",
        "check the shipped model before a rollout",
        "add_verify_model_arguments",
        "run_verify_model",
    ),
    "verify-candidate": Command(
        "jobshop_scheduler.verify_cli",
        "replay recorded requests and a load test against a candidate server (a rollout's gate)",
    ),
    "backup-model": Command(
        "jobshop_scheduler.ops.cli",
        "keep a timestamped, checksum-verified copy of the model",
        "add_backup_model_arguments",
        "run_backup_model",
    ),
    "preflight": Command(
        "jobshop_scheduler.ops.cli",
        "check this host's prerequisites (table or --json)",
        "add_preflight_arguments",
        "run_preflight_command",
    ),
}

# Packages outside the serving install, and the extra that brings each.
EXTRAS = {
    "torch": "train",
    "stable_baselines3": "train",
    "sb3_contrib": "train",
    "gymnasium": "train",
    "matplotlib": "plots",
    "ortools": "cpsat",
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` subcommand's module is imported for its flags."""
    parser = argparse.ArgumentParser(prog="schedctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name == selected:
            module = importlib.import_module(command.module)
            getattr(module, command.add_arguments)(p)
            p.set_defaults(handler=getattr(module, command.run))
    return parser


def _selected(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _missing_extra(exc: ModuleNotFoundError) -> CliError | None:
    package = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(package)
    if extra is None:
        return None
    return CliError(
        f"needs {package}, which the serving install leaves out: install the {extra!r} extra "
        f"(uv sync --extra {extra}, or pip install 'jobshop-scheduler[{extra}]')"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = _selected(argv)
    seed_kernel_cache()  # before any command module imports numba
    try:
        args = build_parser(selected if selected in COMMANDS else None).parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except CliError as exc:
        print(f"schedctl {selected}: {exc}", file=sys.stderr)
        return exc.code
    except ModuleNotFoundError as exc:
        missing = _missing_extra(exc)
        if missing is None:
            raise
        print(f"schedctl {selected}: {missing}", file=sys.stderr)
        return missing.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
