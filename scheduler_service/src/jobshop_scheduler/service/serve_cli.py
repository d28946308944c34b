"""`schedctl serve`: flags -> ``ServerConfig`` -> the server, until SIGTERM.

Defaults come from the environment the operator sets on the pod (``SCHEDULER_TRACK``,
``SCHEDULER_API_KEYS_FILE``, ``SCHEDULER_DEFAULT_POLICY``), so the Deployment needs no per-track
command line. Every
start-up failure exits 2 with one line naming the flag or file at fault.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from jobshop_scheduler.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL_DIR,
    DEFAULT_TIME_BUDGET_MS,
    MAX_TIME_BUDGET_MS,
)
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE, RULES
from jobshop_scheduler.planner import DEFAULT_POLICIES
from jobshop_scheduler.service.config import (
    DEFAULT_GRACE_S,
    DEFAULT_MAX_JOBS,
    DEFAULT_MAX_OPERATIONS,
    DEFAULT_MAX_TABLE_CELLS,
    DEFAULT_METRICS_PORT,
    DEFAULT_POLICY_ENV,
    DEFAULT_PORT,
    KEYS_ENV,
    TIME_BUDGET_ENV,
    TRACK_ENV,
    TRACKS,
    ConfigError,
    ServerConfig,
    resolve_track,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Serve the Scheduler gRPC API with health, reflection and Prometheus metrics. Health "
        "stays NOT_SERVING until the model passes its checks. Refuses to start without API "
        "keys unless --no-auth. SIGTERM drains calls in flight."
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="gRPC port (default: %(default)s)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="Prometheus /metrics port; 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="final_model.zip and its card; the server stays NOT_SERVING until they check out "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--track",
        choices=TRACKS,
        help=f"metric label of this deployment (default: ${TRACK_ENV}, else stable)",
    )
    p.add_argument(
        "--keys",
        type=Path,
        default=os.environ.get(KEYS_ENV) or None,
        help=f"API keys file, or a mounted Secret directory (default: ${KEYS_ENV})",
    )
    p.add_argument(
        "--no-auth", action="store_true", help="serve without API keys (logged as a warning)"
    )
    p.add_argument("--tls-cert", type=Path, help="server certificate (PEM); enables TLS")
    p.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by it")
    p.add_argument("--audit-dir", type=Path, help="write the audit trail (audit.jsonl) here")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="jobs the policy sees at once: a larger request opens its jobs in release and "
        "due-date order, the next as one finishes, and counts one batch per this many "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-jobs",
        type=int,
        default=DEFAULT_MAX_JOBS,
        help="larger requests get INVALID_ARGUMENT (default: %(default)s)",
    )
    p.add_argument(
        "--max-operations",
        type=int,
        default=DEFAULT_MAX_OPERATIONS,
        help="requests with more operations get INVALID_ARGUMENT naming `jobs`: converting "
        "and checking one cost 3-4 us and up to 300 bytes (default: %(default)s)",
    )
    p.add_argument(
        "--max-table-cells",
        type=int,
        default=DEFAULT_MAX_TABLE_CELLS,
        help="requests whose operations x machines exceed this get INVALID_ARGUMENT naming "
        "`machines`: the planner holds a cell per pair, about 9 bytes (default: %(default)s)",
    )
    p.add_argument(
        "--legacy-rule",
        choices=RULES,
        default=LEGACY_RULE,
        help="baseline and fallback rule (default: %(default)s)",
    )
    p.add_argument(
        "--default-policy",
        choices=DEFAULT_POLICIES,
        default=os.environ.get(DEFAULT_POLICY_ENV) or "ppo",
        help="what requests with policy AUTO get: ppo (the model, the legacy rule as fallback) "
        f"or a rule, for a deployment that still runs the legacy scheduler "
        f"(default: ${DEFAULT_POLICY_ENV}, else ppo)",
    )
    p.add_argument(
        "--time-budget-ms",
        type=int,
        default=os.environ.get(TIME_BUDGET_ENV) or DEFAULT_TIME_BUDGET_MS,  # argparse checks it
        help="search budget for requests that do not set time_budget_ms; 0: greedy pass only "
        f"(default: ${TIME_BUDGET_ENV}, else {DEFAULT_TIME_BUDGET_MS})",
    )
    p.add_argument(
        "--max-time-budget-ms",
        type=int,
        default=MAX_TIME_BUDGET_MS,
        help="requests asking for more are refused with INVALID_ARGUMENT (default: %(default)s)",
    )
    p.add_argument("--mirror-config", type=Path, help="mirror config JSON (watched for changes)")
    p.add_argument(
        "--faults-file",
        type=Path,
        help="test fault injection; ignored unless SCHEDULER_ENABLE_FAULTS=1",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help="seconds calls in flight get to finish on SIGTERM (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=2, help="planner threads (default: %(default)s)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument(
        "--log-format", choices=("json", "text"), default="json", help="default: %(default)s"
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The server config the flags describe; ConfigError names the flag at fault."""
    return ServerConfig(
        host=args.host, port=args.port, metrics_port=args.metrics_port,
        model_dir=args.model_dir, track=resolve_track(args.track), keys_path=args.keys,
        no_auth=args.no_auth, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca, audit_dir=args.audit_dir,
        batch_size=args.batch_size, max_jobs=args.max_jobs,
        max_operations=args.max_operations, max_table_cells=args.max_table_cells,
        legacy_rule=args.legacy_rule,
        default_policy=args.default_policy, mirror_config=args.mirror_config,
        time_budget_ms=args.time_budget_ms, max_time_budget_ms=args.max_time_budget_ms,
        faults_file=args.faults_file, grace_s=args.grace, workers=args.workers,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Configure logging, then serve until a signal; a start-up error is one line, exit 2."""
    from jobshop_scheduler.command_error import CliError  # noqa: PLC0415
    from jobshop_scheduler.service.keys import KeyFileError  # noqa: PLC0415
    from jobshop_scheduler.service.logs import configure_logging  # noqa: PLC0415
    from jobshop_scheduler.service.server import StartError  # noqa: PLC0415
    from jobshop_scheduler.service.server import run as run_server  # noqa: PLC0415

    try:
        config = config_from_args(args)
        configure_logging(args.log_level, json=args.log_format == "json")
        asyncio.run(run_server(config))
    except (ConfigError, KeyFileError, StartError, OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    return 0
