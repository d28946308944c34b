"""`schedctl`: the scheduler's command line.

Exit codes: 0 success, 1 the work failed (e.g. an invalid schedule), 2 bad input or a missing
prerequisite (with a message naming the field or file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from jobshop_scheduler import __version__
from jobshop_scheduler.domain.codec import (
    POLICIES,
    ProblemFormatError,
    policy_from_dict,
    problem_from_document,
    read_document,
    schedule_from_dict,
    time_budget_from_dict,
)
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import ValidationReport, validate, validate_problem
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE, RULES
from jobshop_scheduler.planner import DEFAULT_TIME_BUDGET_MS, Planner, PolicyUnavailable
from jobshop_scheduler.rl.model_store import DEFAULT_MODEL_DIR, ModelError, load_model

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A message for stderr and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _read_problem(path: Path) -> tuple[Problem, str, int | None]:
    """The request's problem, policy and time budget, or a CliError naming the file and field."""
    try:
        doc = read_document(path)
        problem = problem_from_document(doc)
        policy = policy_from_dict(doc)
        budget = time_budget_from_dict(doc)
    except FileNotFoundError as exc:
        raise CliError(f"{path}: no such file") from exc
    except ProblemFormatError as exc:
        raise CliError(f"{path}: {exc}") from exc
    errors = validate_problem(problem)
    if errors:
        raise CliError(f"{path}: invalid request:\n" + "\n".join(f"  {e}" for e in errors))
    return problem, policy, budget


def _print_summary(
    response: dict[str, Any], report: ValidationReport, legacy: str, fallback: str = ""
) -> None:
    """The human-readable table, for a local plan and a server's answer alike."""
    makespan, baseline = response["makespan"], response["baseline_makespan"]
    gain = 1 - makespan / baseline if baseline else 0.0
    print(f"request     {response['request_id'] or '-'}")
    note = f"  (fallback: {fallback})" if fallback else ""
    print(f"policy      {response['policy_used']}{note}")
    print(f"makespan    {makespan}  ({legacy}: {baseline}, {gain:+.1%})")
    if response.get("time_budget_ms"):
        print(
            f"search      {response['search_stage']} won in {response['time_budget_ms']} ms: "
            f"greedy {response['greedy_makespan']}, lower bound {response['lower_bound']}, "
            f"{response['search_iterations']} tabu iterations"
        )
    print(f"completion  {report.completion_rate:.3f}  utilisation {report.mean_utilisation:.3f}")
    print(f"tardiness   {report.total_tardiness} over {report.tardy_jobs} tardy jobs")
    print(f"latency     {response['latency_ms']:.1f} ms  model {response['model_version'] or '-'}")
    for missing in response["unscheduled"][:10]:
        print(f"unscheduled {missing['job_id']}: {missing['reason']}")


def _output(
    args: argparse.Namespace,
    problem: Problem,
    response: dict[str, Any],
    report: ValidationReport,
    *,
    legacy: str,
    fallback: str = "",
) -> None:
    if args.json:
        print(json.dumps(response, indent=2 if args.pretty else None))
    else:
        _print_summary(response, report, legacy, fallback)
    if args.gantt:
        from jobshop_scheduler.gantt import write_gantt  # noqa: PLC0415 - matplotlib on demand

        try:
            write_gantt(schedule_from_dict(response), problem.machines, args.gantt)
        except OSError as exc:
            raise CliError(f"cannot write the Gantt chart {args.gantt}: {exc}") from exc
        print(f"schedctl schedule: Gantt chart written to {args.gantt}", file=sys.stderr)


def cmd_schedule(args: argparse.Namespace) -> int:
    if args.local == bool(args.target):
        raise CliError("give either --local (schedule in this process) or --target HOST:PORT")
    problem, requested, requested_budget = _read_problem(args.file)
    policy = args.policy or requested
    budget = args.time_budget_ms if args.time_budget_ms is not None else requested_budget
    if args.target:
        if args.iterations is not None:
            raise CliError("--iterations is for --local runs; a server's search runs on its clock")
        return _schedule_remote(args, problem, policy, budget)
    model = None
    if policy in ("auto", "ppo"):
        try:
            model = load_model(args.model_dir)
        except ModelError as exc:
            if policy == "ppo":
                raise CliError(f"cannot use policy ppo: {exc}") from exc
            print(f"schedctl: {exc}; answering with the legacy rule", file=sys.stderr)
    try:
        planner = Planner(model, time_budget_ms=DEFAULT_TIME_BUDGET_MS)
        plan = planner.plan(problem, policy, budget, iterations=args.iterations, seed=args.seed)
    except PolicyUnavailable as exc:
        raise CliError(str(exc)) from exc
    legacy, fallback = f"legacy {LEGACY_RULE}", plan.fallback_reason
    _output(args, problem, plan.response(), plan.report, legacy=legacy, fallback=fallback)
    return 0


def _rpc_error(exc: grpc.RpcError) -> CliError:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    caller_fault = code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    return CliError(f"{code.name}: {details}", code=2 if caller_fault else 1)


def _schedule_remote(
    args: argparse.Namespace, problem: Problem, policy: str, budget_ms: int | None
) -> int:
    from jobshop_scheduler.service import client  # noqa: PLC0415
    from jobshop_scheduler.service.convert import problem_to_pb, response_from_pb  # noqa: PLC0415

    if policy not in POLICIES:
        raise CliError(f"with --target, --policy must be one of {', '.join(POLICIES)}")
    try:
        answer = client.schedule(
            args.target, problem_to_pb(problem, policy, budget_ms), api_key_file=args.api_key_file,
            tls_ca=args.tls_ca, timeout=args.timeout,
        )  # fmt: skip
    except grpc.RpcError as exc:
        raise _rpc_error(exc) from exc
    except (client.ClientError, OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    response = response_from_pb(answer)
    report = validate(problem, schedule_from_dict(response))  # trust, but verify
    _output(args, problem, response, report, legacy="legacy")
    invalid = [v for v in report.violations if v.kind != "missing"]
    if invalid:
        print(f"schedctl schedule: the answer is INVALID: {invalid[0]}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from jobshop_scheduler.service import serve_cli  # noqa: PLC0415
    from jobshop_scheduler.service.config import ConfigError  # noqa: PLC0415
    from jobshop_scheduler.service.keys import KeyFileError  # noqa: PLC0415
    from jobshop_scheduler.service.server import StartError  # noqa: PLC0415

    try:
        serve_cli.run(args)
    except (ConfigError, KeyFileError, StartError, OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from jobshop_scheduler.service import client  # noqa: PLC0415

    try:
        status = client.health_status(
            args.target, tls_ca=args.tls_ca, timeout=args.timeout, service=args.service
        )
    except grpc.RpcError as exc:
        raise CliError(f"{args.target}: {_rpc_error(exc)}", code=1) from exc
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    print(status)
    if status != "SERVING":
        print(f"schedctl health: {args.target} is {status}", file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from jobshop_scheduler.rl import train_cli  # noqa: PLC0415 - torch only for this command

    return train_cli.run(args)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from jobshop_scheduler.bench import quality  # noqa: PLC0415

    return quality.run(args)


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from jobshop_scheduler.bench import latency  # noqa: PLC0415

    return latency.run(args)


def cmd_soak(args: argparse.Namespace) -> int:
    from jobshop_scheduler.bench import soak  # noqa: PLC0415

    return soak.run(args)


def cmd_keygen(args: argparse.Namespace) -> int:
    from jobshop_scheduler.service import keys  # noqa: PLC0415

    try:
        if args.keys_file:
            key, key_id = keys.add_key(args.keys_file, args.label)
            where = f"appended key id {key_id} to {args.keys_file}"
        else:
            key, line = keys.generate_key(args.label)
            where = f"add this line to the keys file (or its Secret):\n{line}"
    except (keys.KeyFileError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    print(key)
    print(
        f"schedctl keygen: {where}\n"
        "Only the key's sha256 hash is stored: this is the one time the key is shown.",
        file=sys.stderr,
    )
    return 0


def _budget(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-budget-ms",
        type=_budget,
        metavar="MS",
        help="search for a shorter plan this long; 0: the greedy pass alone (default: the "
        f"request's time_budget_ms, else the server's default; --local: {DEFAULT_TIME_BUDGET_MS})",
    )
    p.add_argument(
        "--iterations",
        type=_budget,
        metavar="N",
        help="--local: a fixed search effort instead of the clock (reproducible answers)",
    )
    p.add_argument("--seed", type=int, default=0, help="--local: the search's seed (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schedctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "schedule",
        help="schedule a request file, in-process (--local) or on a server (--target)",
        description="Schedule a request file and print a summary (or the response JSON). "
        "With --target the answer is re-validated here; exit 1 if it is invalid.",
    )
    p.add_argument("file", type=Path, help="request JSON or snapshot (docs/request-format.md)")
    p.add_argument("--local", action="store_true", help="schedule in this process (no server)")
    p.add_argument("--target", metavar="HOST:PORT", help="call the scheduler server there")
    p.add_argument(
        "--policy",
        choices=("auto", "ppo", "heuristic", *RULES),
        help="override the request's policy (default: the request's, else auto; "
        "with --target only auto, ppo, heuristic)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="--local: folder with final_model.zip and model_card.json (default: %(default)s)",
    )
    p.add_argument("--api-key-file", type=Path, help="--target: file holding the API key")
    p.add_argument("--tls-ca", type=Path, help="--target: use TLS, trusting this CA (PEM)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="--target: seconds (default: %(default)s)"
    )
    _add_search_arguments(p)
    p.add_argument("--json", action="store_true", help="print the response JSON")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.add_argument("--gantt", type=Path, metavar="PNG", help="also draw the schedule as a chart")
    p.set_defaults(handler=cmd_schedule)

    from jobshop_scheduler.service import serve_cli  # noqa: PLC0415 - argparse only

    p = sub.add_parser(
        "serve",
        help="run the gRPC scheduler server",
        description="Serve the Scheduler gRPC API with health, reflection and Prometheus "
        "metrics. Health stays NOT_SERVING until the model passes its checks. Refuses to "
        "start without API keys unless --no-auth. SIGTERM drains calls in flight.",
    )
    serve_cli.add_arguments(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "health",
        help="ask a server whether it is SERVING (exit 0) or not (exit 1)",
    )
    p.add_argument("--target", metavar="HOST:PORT", required=True, help="the server")
    p.add_argument("--tls-ca", type=Path, help="use TLS, trusting this CA (PEM)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    p.add_argument(
        "--service",
        default="scheduler.v1.Scheduler",
        help='health service name; "" for the whole server (default: %(default)s)',
    )
    p.set_defaults(handler=cmd_health)

    from jobshop_scheduler.rl import train_cli  # noqa: PLC0415 - argparse only, no torch

    p = sub.add_parser("train", help="train a PPO dispatching policy and write its model card")
    train_cli.add_arguments(p)
    p.set_defaults(handler=cmd_train)

    from jobshop_scheduler.bench import quality  # noqa: PLC0415

    p = sub.add_parser(
        "benchmark", help="PPO vs the legacy rules on Taillard and production-like sets"
    )
    quality.add_arguments(p)
    p.set_defaults(handler=cmd_benchmark)

    from jobshop_scheduler.bench import latency, soak  # noqa: PLC0415

    p = sub.add_parser(
        "bench-latency",
        help="Schedule latency and throughput over real gRPC, by size, policy and concurrency",
        description=latency.__doc__.split("\n\n")[0] + " Starts its own servers (schedctl "
        "serve subprocesses on loopback) and prints one table: p50/p95/p99 client latency, the "
        "server's own p50, throughput and errors per cell, then the fast path's speed-up over "
        "SB3 predict and the latency cost of mirroring to a shadow server.",
    )
    latency.add_arguments(p)
    p.set_defaults(handler=cmd_bench_latency)

    p = sub.add_parser(
        "soak",
        help="drive a server at concurrency 8 for 10 minutes; FAIL on errors or memory growth",
        description=soak.__doc__.split("\n\n")[0] + " Exit 1 (FAIL) on any failed call or "
        "memory growth past --max-growth after warm-up.",
    )
    soak.add_arguments(p)
    p.set_defaults(handler=cmd_soak)

    p = sub.add_parser("keygen", help="generate an API key; only its hash goes to the keys file")
    p.add_argument("--label", default="", help="who the key is for (kept next to the hash)")
    p.add_argument(
        "--keys-file",
        type=Path,
        help="append the hash line to this keys file (created with mode 0600)",
    )
    p.set_defaults(handler=cmd_keygen)

    from jobshop_scheduler.data import cli as data_cli  # noqa: PLC0415
    from jobshop_scheduler.ops import cli as ops_cli  # noqa: PLC0415

    data_cli.register(sub)  # ingest, verify-data
    ops_cli.register(sub)  # verify-model, backup-model, preflight
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"schedctl {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
