"""`schedctl verify-candidate`: the gate a candidate passes before any traffic reaches it.

The rollout operator runs it as a Job built from the candidate's own pod template, so it runs the
candidate's code next to the model card that template ships. In order, stopping at the first
failing part:

1. model: the candidate becomes SERVING within --timeout-seconds, and its answers name the model
   of --model-dir (default $SCHEDULER_MODEL_DIR; without either, whatever model it names);
2. replay: every request in --requests goes to the candidate and to the stable; the validator
   checks each candidate answer, and the mean makespan ratio candidate/stable must not exceed
   --max-makespan-ratio;
3. load (only with --concurrency): --load-requests calls cycling through the requests with
   --concurrency in flight; no call may fail and p99 must not exceed --p99-limit-seconds.

One compact JSON object (``ops.candidate``) goes to stdout and to --result-file: the Job's
/dev/termination-log, which the kubelet hands to the operator with the Pod's status. The
measuring is here, the judging in ``ops.candidate``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.arg_types import positive, positive_number
from jobshop_scheduler.bench.load import MAX_MESSAGE_BYTES, drive
from jobshop_scheduler.command_error import CliError
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.ops import candidate
from jobshop_scheduler.ops.candidate import Answer, LoadFigures, Pair, Part
from jobshop_scheduler.rl.model_store import ModelCard, ModelError
from jobshop_scheduler.schedule_cli import read_request, rpc_error
from jobshop_scheduler.service import client
from jobshop_scheduler.service.auth import API_KEY_HEADER
from jobshop_scheduler.service.convert import problem_to_pb, response_from_pb

MODEL_DIR_ENV = "SCHEDULER_MODEL_DIR"
HEALTH_POLL_S = 1.0
HEALTH_CALL_S = 5.0
DEFAULT_LOAD_REQUESTS = 200
DEFAULT_P99_LIMIT_S = 1.0
DESCRIPTION = """\
Check a candidate before any traffic reaches it, stopping at the first failing part:
  1. model: the candidate becomes SERVING within --timeout-seconds and its answers name the
     model of --model-dir (default $SCHEDULER_MODEL_DIR; without either, any model);
  2. replay: every request in --requests to the candidate and to the stable; every candidate
     answer must pass the validator (no job left out) and the mean makespan ratio
     candidate/stable must not exceed --max-makespan-ratio;
  3. load (only with --concurrency): --load-requests calls to the candidate cycling through the
     requests, --concurrency in flight; no call may fail, p99 must not exceed
     --p99-limit-seconds."""
EPILOG = """\
result, on stdout and in --result-file (compact JSON, at most 4000 bytes; a part not reached
is absent; "reason" is empty when passed):
  {"passed": false, "reason": "replay: 1 of 12 answers invalid (r7: ...)",
   "model": {"version": ..., "sha256": ...},
   "replay": {"requests", "invalid", "longer", "meanRatio", "maxRatio"},
   "load": {"requests", "concurrency", "errors", "p50Seconds", "p99Seconds", "limitSeconds"}}
exit codes: 0 passed, 1 failed, 2 bad usage (missing folder, no requests, a request that does
not parse, an unreadable key file or model card; the result then says "usage: ...")"""
_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


@dataclass(frozen=True)
class Replay:
    """One recorded request: its name (the file's, without .json) and what is sent."""

    name: str
    problem: Problem
    request: pb.ScheduleRequest


def read_requests(folder: Path) -> list[Replay]:
    """Every ``*.json`` in ``folder`` (a mounted ConfigMap: its ``..data`` links are skipped),
    by name; a CliError naming the folder, or the file and field, when one cannot be used."""
    if not folder.is_dir():
        raise CliError(f"--requests {folder}: no such folder")
    files = sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CliError(f"--requests {folder}: no *.json request files in it")
    replays = []
    for path in files:
        problem, policy, budget = read_request(path)
        replays.append(Replay(path.stem, problem, problem_to_pb(problem, policy, budget)))
    return replays


def _model_card(model_dir: Path | None) -> tuple[str, str]:
    """(version, sha256) of the card this pod ships; ("", "") when no folder is named."""
    named = model_dir or os.environ.get(MODEL_DIR_ENV)
    if not named:
        return "", ""
    folder = Path(named)
    try:
        card = ModelCard.read(folder)
    except ModelError as exc:
        raise CliError(f"--model-dir: {exc}") from exc
    return card.version, card.sha256


def _wait_serving(args: argparse.Namespace) -> str:
    """Empty once the candidate's health says SERVING; why not, after --timeout-seconds."""
    deadline = time.monotonic() + args.timeout_seconds
    while True:
        wait = max(0.1, min(HEALTH_CALL_S, deadline - time.monotonic()))
        try:
            status = client.health_status(args.candidate, tls_ca=args.tls_ca, timeout=wait)
        except grpc.RpcError as exc:
            why = f"candidate {args.candidate} unreachable ({rpc_error(exc)})"
        except (OSError, ValueError) as exc:
            raise CliError(f"--tls-ca: {exc}") from exc
        else:
            if status == "SERVING":
                return ""
            why = f"candidate {args.candidate} is {status}"
        if time.monotonic() + HEALTH_POLL_S >= deadline:
            return f"{why} after {args.timeout_seconds:g} s"
        time.sleep(HEALTH_POLL_S)


class _Side:
    """One scheduler (candidate or stable) over one channel, for the replay."""

    def __init__(self, target: str, args: argparse.Namespace, metadata: Sequence[Any]) -> None:
        self.channel = client.open_channel(target, args.tls_ca, _OPTIONS)
        self.stub = pb_grpc.SchedulerStub(self.channel)  # type: ignore[no-untyped-call]
        self.metadata, self.timeout = tuple(metadata), args.timeout_seconds

    def answer(self, replay: Replay) -> Answer:
        try:
            response = self.stub.Schedule(
                replay.request, metadata=self.metadata, timeout=self.timeout
            )
        except grpc.RpcError as exc:
            return candidate.failed_call(str(rpc_error(exc)))
        return candidate.check_answer(replay.problem, response_from_pb(response))


def _replay(args: argparse.Namespace, replays: list[Replay], key: str | None) -> list[Pair]:
    """Each request to both sides at once (they are different pods), one request at a time."""
    metadata = ((API_KEY_HEADER, key),) if key else ()
    sides = [_Side(args.candidate, args, metadata), _Side(args.stable, args, metadata)]
    pairs = []
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="replay") as pool:
            for replay in replays:
                ours, theirs = pool.map(_Side.answer, sides, (replay, replay))
                pairs.append(Pair(replay.name, ours, theirs))
    finally:
        for side in sides:
            side.channel.close()
    return pairs


def _load(args: argparse.Namespace, replays: list[Replay], key: str | None) -> Part:
    result = drive(
        args.candidate, [r.request.SerializeToString() for r in replays],
        concurrency=args.concurrency, requests=args.load_requests, api_key=key,
        tls_ca=args.tls_ca, timeout_s=args.timeout_seconds,
    )  # fmt: skip
    figures = LoadFigures(
        args.load_requests, args.concurrency, result.client_ms(50) / 1000,
        result.client_ms(99) / 1000, result.errors, result.first_error,
    )  # fmt: skip
    return candidate.load_part(figures, args.p99_limit_seconds)


def _verify(args: argparse.Namespace, replays: list[Replay], key: str | None) -> list[Part]:
    version, sha256 = _model_card(args.model_dir)
    why = _wait_serving(args)
    if why:
        return [candidate.unreachable(version, sha256, why)]
    pairs = _replay(args, replays, key)
    parts = [candidate.model_part(version, sha256, [p.candidate.model_version for p in pairs])]
    parts.append(candidate.replay_part(pairs, args.max_makespan_ratio))
    if all(p.passed for p in parts) and args.concurrency is not None:
        parts.append(_load(args, replays, key))
    return [p for i, p in enumerate(parts) if all(q.passed for q in parts[:i])]


def _publish(result: dict[str, Any], result_file: Path | None) -> None:
    """The JSON to stdout and the result file; a file that cannot be written is reported on
    stderr and changes no exit code (the verdict is the verdict, and stdout still has it)."""
    text = candidate.render(result)
    print(text)
    if result_file is None:
        return
    try:
        result_file.write_text(text)
    except OSError as exc:
        print(f"schedctl verify-candidate: cannot write {result_file}: {exc}", file=sys.stderr)


def _check_flags(args: argparse.Namespace) -> None:
    if args.concurrency is None:
        given = [f for f, v in (("--load-requests", args.load_requests),
                 ("--p99-limit-seconds", args.p99_limit_seconds)) if v is not None]  # fmt: skip
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise CliError(f"{' and '.join(given)} {verb} --concurrency (the load test's)")
        return
    if args.load_requests is None:
        args.load_requests = DEFAULT_LOAD_REQUESTS
    if args.p99_limit_seconds is None:
        args.p99_limit_seconds = DEFAULT_P99_LIMIT_S


def run(args: argparse.Namespace) -> int:
    try:
        _check_flags(args)
        replays = read_requests(args.requests)
        key = client.read_key_file(args.api_key_file) if args.api_key_file else None
        parts = _verify(args, replays, key)
    except client.ClientError as exc:
        _publish(candidate.usage_result(str(exc)), args.result_file)
        raise CliError(str(exc)) from exc
    except CliError as exc:
        if exc.code == 2:
            _publish(candidate.usage_result(str(exc)), args.result_file)
        raise
    result = candidate.verdict(parts)
    _publish(result, args.result_file)
    if not result["passed"]:
        print(f"schedctl verify-candidate: FAILED: {result['reason']}", file=sys.stderr)
        return 1
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description, p.formatter_class = DESCRIPTION, argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--candidate", required=True, metavar="HOST:PORT", help="the candidate")
    p.add_argument("--stable", required=True, metavar="HOST:PORT", help="the stable track")
    p.add_argument(
        "--requests", required=True, type=Path, metavar="DIR",
        help="folder of request files (*.json, docs/request-format.md), e.g. a mounted ConfigMap",
    )  # fmt: skip
    p.add_argument(
        "--max-makespan-ratio", type=positive_number, default=1.0, metavar="X",
        help="fail when the mean candidate/stable makespan ratio is above X (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--concurrency", type=positive, metavar="N", help="run the load test, N calls in flight"
    )
    p.add_argument(
        "--load-requests", type=positive, metavar="N",
        help=f"calls in the load test (default: {DEFAULT_LOAD_REQUESTS})",
    )  # fmt: skip
    p.add_argument(
        "--p99-limit-seconds", type=positive_number, metavar="S",
        help=f"fail the load test when p99 latency is above S (default: {DEFAULT_P99_LIMIT_S})",
    )  # fmt: skip
    p.add_argument(
        "--api-key-file", type=Path, metavar="FILE", help="file holding the API key (both tracks)"
    )
    p.add_argument("--tls-ca", type=Path, metavar="PEM", help="use TLS, trusting this CA (PEM)")
    p.add_argument(
        "--model-dir", type=Path, metavar="DIR",
        help=f"the model the candidate must serve (default: ${MODEL_DIR_ENV})",
    )  # fmt: skip
    p.add_argument(
        "--result-file", type=Path, metavar="FILE",
        help="also write the result JSON here (in a Job: /dev/termination-log)",
    )  # fmt: skip
    p.add_argument(
        "--timeout-seconds",
        type=positive_number,
        default=60.0,
        metavar="S",
        help="bounds each call, and the wait for the candidate to be SERVING "
        "(default: %(default)s)",
    )
