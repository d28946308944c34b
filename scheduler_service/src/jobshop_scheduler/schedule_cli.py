"""`schedctl schedule` and `schedctl health`: ask for a plan, in-process or from a server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from jobshop_scheduler.api import SCHEDULER_SERVICE
from jobshop_scheduler.arg_types import non_negative
from jobshop_scheduler.command_error import CliError
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR, DEFAULT_TIME_BUDGET_MS
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
from jobshop_scheduler.planner import Planner, PolicyUnavailable
from jobshop_scheduler.rl.model_store import ModelError, load_model


def read_request(path: Path) -> tuple[Problem, str, int | None]:
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
    budget = response.get("time_budget_ms")
    if budget:
        found = (
            f"greedy {response['greedy_makespan']}, lower bound {response['lower_bound']}, "
            f"{response['search_iterations']} tabu iterations"
        )
        starved = response["search_iterations"] == 0 and response["lower_bound"] < makespan
        if starved and response["latency_ms"] >= budget:  # a large request's greedy pass
            print(f"search      no time left: the call took {response['latency_ms']:.0f} ms of "
                  f"a {budget} ms budget; {response['search_stage']} plan, {found}")  # fmt: skip
        else:
            print(f"search      {response['search_stage']} won in {budget} ms: {found}")
    cut = response.get("greedy_cut_operations", 0)  # servers before 2026-12-07 do not say
    if cut:
        operations = len(response["assignments"])
        print(f"greedy      cut at its deadline: rules placed {cut} of {operations} operations "
              f"(the shortest of {legacy}, spt, mor that fit; a larger --time-budget-ms buys "
              "the whole pass)")  # fmt: skip
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


def run(args: argparse.Namespace) -> int:
    if args.local == bool(args.target):
        raise CliError("give either --local (schedule in this process) or --target HOST:PORT")
    problem, requested, requested_budget = read_request(args.file)
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


def rpc_error(exc: grpc.RpcError) -> CliError:
    """``CODE: details``; exit 2 when the caller is at fault (bad request, key), else 1."""
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
        raise rpc_error(exc) from exc
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


def run_health(args: argparse.Namespace) -> int:
    from jobshop_scheduler.service import client  # noqa: PLC0415

    try:
        status = client.health_status(
            args.target, tls_ca=args.tls_ca, timeout=args.timeout, service=args.service
        )
    except grpc.RpcError as exc:
        raise CliError(f"{args.target}: {rpc_error(exc)}", code=1) from exc
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    print(status)
    if status != "SERVING":
        print(f"schedctl health: {args.target} is {status}", file=sys.stderr)
        return 1
    return 0


def _add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-budget-ms",
        type=non_negative,
        metavar="MS",
        help="search for a shorter plan this long; 0: no search, the shortest of the greedy "
        "pass and the plans of the legacy rule, SPT and MOR (default: the request's "
        "time_budget_ms, else the "
        f"server's default; --local: {DEFAULT_TIME_BUDGET_MS})",
    )
    p.add_argument(
        "--iterations",
        type=non_negative,
        metavar="N",
        help="--local: a fixed search effort instead of the clock (reproducible answers)",
    )
    p.add_argument("--seed", type=int, default=0, help="--local: the search's seed (default: 0)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Schedule a request file and print a summary (or the response JSON). "
        "With --target the answer is re-validated here; exit 1 if it is invalid."
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


def add_health_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", metavar="HOST:PORT", required=True, help="the server")
    p.add_argument("--tls-ca", type=Path, help="use TLS, trusting this CA (PEM)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    p.add_argument(
        "--service",
        default=SCHEDULER_SERVICE,
        help='health service name; "" for the whole server (default: %(default)s)',
    )
