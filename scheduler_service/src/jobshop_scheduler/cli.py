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

from jobshop_scheduler import __version__
from jobshop_scheduler.domain.codec import (
    ProblemFormatError,
    policy_from_dict,
    problem_from_document,
    read_document,
)
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import validate_problem
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE, RULES
from jobshop_scheduler.planner import Plan, Planner, PolicyUnavailable
from jobshop_scheduler.rl.model_store import DEFAULT_MODEL_DIR, ModelError, load_model

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A message for stderr and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _read_problem(path: Path) -> tuple[Problem, str]:
    """The request's problem and policy, or a CliError naming the file and field."""
    try:
        doc = read_document(path)
        problem = problem_from_document(doc)
        policy = policy_from_dict(doc)
    except FileNotFoundError as exc:
        raise CliError(f"{path}: no such file") from exc
    except ProblemFormatError as exc:
        raise CliError(f"{path}: {exc}") from exc
    errors = validate_problem(problem)
    if errors:
        raise CliError(f"{path}: invalid request:\n" + "\n".join(f"  {e}" for e in errors))
    return problem, policy


def _print_plan(plan: Plan) -> None:
    gain = 1 - plan.schedule.makespan / plan.baseline_makespan if plan.baseline_makespan else 0.0
    print(f"request     {plan.problem.request_id or '-'}")
    fallback = f"  (fallback: {plan.fallback_reason})" if plan.fallback_reason else ""
    report = plan.report
    print(f"policy      {plan.policy_used}{fallback}")
    print(
        f"makespan    {plan.schedule.makespan}  "
        f"(legacy {LEGACY_RULE}: {plan.baseline_makespan}, {gain:+.1%})"
    )
    print(f"completion  {report.completion_rate:.3f}  utilisation {report.mean_utilisation:.3f}")
    print(f"tardiness   {plan.report.total_tardiness} over {plan.report.tardy_jobs} tardy jobs")
    print(f"latency     {plan.latency_ms:.1f} ms  model {plan.model_version or '-'}")


def cmd_schedule(args: argparse.Namespace) -> int:
    if not args.local:
        raise CliError("remote scheduling (--target) arrives with the gRPC service; use --local")
    problem, requested = _read_problem(args.file)
    policy = args.policy or requested
    model = None
    if policy in ("auto", "ppo"):
        try:
            model = load_model(args.model_dir)
        except ModelError as exc:
            if policy == "ppo":
                raise CliError(f"cannot use policy ppo: {exc}") from exc
            print(f"schedctl: {exc}; answering with the legacy rule", file=sys.stderr)
    try:
        plan = Planner(model).plan(problem, policy)
    except PolicyUnavailable as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(plan.response(), indent=2 if args.pretty else None))
    else:
        _print_plan(plan)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from jobshop_scheduler.rl import train_cli  # noqa: PLC0415 - torch only for this command

    return train_cli.run(args)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from jobshop_scheduler.bench import quality  # noqa: PLC0415

    return quality.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schedctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("schedule", help="schedule a request file and print the response")
    p.add_argument("file", type=Path, help="request JSON or snapshot (docs/request-format.md)")
    p.add_argument("--local", action="store_true", help="schedule in this process (no server)")
    p.add_argument(
        "--policy",
        choices=("auto", "ppo", "heuristic", *RULES),
        help="override the request's policy (default: the request's, else auto)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="folder with final_model.zip and model_card.json (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the response JSON")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.set_defaults(handler=cmd_schedule)

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
