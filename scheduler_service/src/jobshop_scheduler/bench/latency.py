"""Latency benchmark (``schedctl bench-latency``): the Schedule RPC over real gRPC, end to end.

A ``schedctl serve`` subprocess (see ``bench.servers``) answers requests of every size in
``--sizes``, in both shapes of ``bench.load`` (classic N x 10 on 20 machines, and
production-like), with both policies (ppo, heuristic), at every ``--concurrency``. Each cell
first sends ``concurrency`` warm-up calls (not counted), then ``--requests`` measured ones. Client
latency is wall time around the call in this process; "srv p50" is the ``latency_ms`` the server
reports in its answers (its own planning time, without transport and queueing in gRPC).

Two more measurements print below the table: the fast path's speed-up over stepping the
environment with SB3's predict (``bench.fastpath``), and the cost of mirroring: the same
requests at the largest size with mirroring off, then at 100% to a second, real shadow server
(turned on through the mirror config file the server watches, as in a cluster). In a cluster the
shadow runs on other nodes; here, for both halves of that measurement, the served server is
pinned to all CPUs but the last and the shadow to the last one, so the shadow's own work does not
show up as mirroring cost (with one CPU they share it, and the cost is an upper bound).

Exit codes: 0 every call answered, 1 some calls failed, 2 bad options or a server that would not
start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jobshop_scheduler.arg_types import positive
from jobshop_scheduler.bench import report
from jobshop_scheduler.bench.load import KINDS, drive, payloads
from jobshop_scheduler.bench.report import Cell, CellResult, MirrorResult, cell_result
from jobshop_scheduler.bench.servers import (
    BenchError,
    ServerProcess,
    add_server_options,
    split_cpus,
    start_all,
)
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.service.keys import generate_key

POLICIES = ("ppo", "heuristic")
DEFAULT_SIZES = (10, 50, 170)
DEFAULT_CONCURRENCY = (1, 8)
DEFAULT_REQUESTS = 50
QUICK_SIZES, QUICK_REQUESTS, QUICK_CONCURRENCY = (5, 12), 4, (1, 2)
POOL = 4  # distinct requests per shape; calls cycle through them
MIRROR_ON_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 120.0
MIRROR_OUTCOMES = ("sent", "failed", "dropped")


def grid(
    sizes: tuple[int, ...], concurrency: tuple[int, ...], kinds: tuple[str, ...] = KINDS
) -> list[Cell]:
    return [
        Cell(kind, jobs, policy, c)
        for kind in kinds
        for jobs in sizes
        for c in concurrency
        for policy in POLICIES
    ]


class Bench:
    """The running servers and the options; one method per measurement."""

    def __init__(
        self, main: ServerProcess, shadow: ServerProcess, args: argparse.Namespace, key: str
    ) -> None:
        self.main, self.shadow, self.args, self.key = main, shadow, args, key
        self._payloads: dict[tuple[str, int, str], list[bytes]] = {}

    def payloads(self, kind: str, jobs: int, policy: str) -> list[bytes]:
        key = (kind, jobs, policy)
        if key not in self._payloads:
            self._payloads[key] = payloads(kind, jobs, policy, POOL)
        return self._payloads[key]

    def measure(self, cell: Cell, bar: tqdm[Any]) -> CellResult:
        data = self.payloads(cell.kind, cell.jobs, cell.policy)
        bar.set_postfix_str(f"{cell.kind} {cell.jobs} {cell.policy} c{cell.concurrency}")
        drive(
            self.main.address,
            data,
            concurrency=cell.concurrency,
            requests=cell.concurrency,
            api_key=self.key,
        )
        result = drive(
            self.main.address, data, concurrency=cell.concurrency, requests=self.args.requests,
            api_key=self.key, on_done=lambda: bar.update(1),
        )  # fmt: skip
        return cell_result(cell, result)

    def mirror(self, jobs: int, bar: tqdm[Any]) -> MirrorResult:
        """The same requests with mirroring off, then at 100% to the shadow server."""
        data = self.payloads("production", jobs, "ppo")
        n, key = self.args.requests, self.key
        split = split_cpus()
        if split is not None:  # the shadow must not steal the measured server's CPU
            self.main.pin(split[0])
            self.shadow.pin(split[1])
        bar.set_postfix_str(f"mirror off, production {jobs}")
        drive(self.main.address, data, concurrency=1, requests=1, api_key=key)
        off = drive(
            self.main.address,
            data,
            concurrency=1,
            requests=n,
            api_key=key,
            on_done=lambda: bar.update(1),
        )
        self._mirror_on()
        sent_before, answered_before = self._mirror_counts(), self._shadow_answered()
        bar.set_postfix_str(f"mirror on, production {jobs}")
        on = drive(
            self.main.address, data, concurrency=1, requests=n, api_key=key,
            on_done=lambda: bar.update(1),
        )  # fmt: skip
        after = self._drained(sent_before, on.ok)
        outcomes = {o: after[o] - sent_before[o] for o in MIRROR_OUTCOMES}
        answered = self._shadow_answered() - answered_before
        return MirrorResult.of(jobs, off, on, outcomes, answered)

    def _mirror_on(self) -> None:
        assert self.main.mirror_config is not None
        config = {"target": self.shadow.address, "percent": 100, "timeout_ms": 120_000}
        if self.key:
            key_file = self.main.workdir / "mirror-key"
            key_file.write_text(self.key + "\n")
            config["api_key_file"] = str(key_file)
        self.main.mirror_config.write_text(json.dumps(config))
        deadline = time.monotonic() + MIRROR_ON_TIMEOUT_S
        while '"mirroring on"' not in self.main.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise BenchError("the server did not pick up the mirror config")
            time.sleep(0.2)
        # One mirrored call makes the shadow channel connect before measuring starts.
        before = self._mirror_counts()
        drive(
            self.main.address,
            self.payloads("production", 1, "ppo"),
            concurrency=1,
            requests=1,
            api_key=self.key,
        )
        self._drained(before, 1)

    def _mirror_counts(self) -> dict[str, int]:
        return {
            o: int(self.main.metric("scheduler_mirror_requests_total", outcome=o))
            for o in MIRROR_OUTCOMES
        }

    def _shadow_answered(self) -> int:
        return int(self.shadow.metric("scheduler_requests_total", code="OK"))

    def _drained(self, before: dict[str, int], calls: int) -> dict[str, int]:
        """Mirror counters once every one of ``calls`` mirrored requests has an outcome."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            now = self._mirror_counts()
            done = sum(now.values()) - sum(before.values()) >= calls
            if done or time.monotonic() > deadline:
                return now
            time.sleep(0.2)


def _servers(args: argparse.Namespace, work: Path) -> tuple[ServerProcess, ServerProcess, str]:
    keys, key = None, ""
    if args.auth:
        key, line = generate_key("bench-latency")
        keys = work / "keys"
        keys.write_text(line + "\n")
    common = {"model_dir": args.model_dir, "workdir": work, "keys": keys}
    options = {"workers": args.server_workers, "env": dict(args.server_env)}
    main = ServerProcess(
        "server", track="stable", mirror_config=work / "mirror.json", **common, **options
    )
    shadow = ServerProcess("shadow", track="shadow", **common, **options)
    return main, shadow, key


def run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the servers, measure everything, return the results (``asdict``-able)."""
    cells = grid(args.sizes, args.concurrency)
    mirror_jobs = max(args.sizes)
    main, shadow, key = _servers(args, work)
    with contextlib.ExitStack() as stack:
        stack.callback(shadow.stop)
        stack.callback(main.stop)
        print(f"starting 2 servers (model {args.model_dir}) ...", file=sys.stderr)
        start_all([main, shadow])
        bench = Bench(main, shadow, args, key)
        total = len(cells) * args.requests + 2 * args.requests
        with tqdm(
            total=total, desc="bench-latency", unit="req", file=sys.stderr, disable=args.quiet
        ) as bar:
            results = report.with_ratios([bench.measure(cell, bar) for cell in cells])
            mirror = bench.mirror(mirror_jobs, bar)
    from jobshop_scheduler.bench import fastpath  # noqa: PLC0415 - torch, gymnasium on demand

    print("timing the fast path against SB3 predict ...", file=sys.stderr)
    fast = fastpath.measure_fast_path(args.model_dir, max(args.sizes))
    return {"cells": results, "mirror": mirror, "fast_path": fast}


def to_json(measured: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = report.jsonable(
        {
            "settings": {
                "model_dir": str(args.model_dir),
                "sizes": list(args.sizes),
                "concurrency": list(args.concurrency),
                "requests": args.requests,
                "auth": args.auth,
                "server_workers": args.server_workers,
                "server_env": dict(args.server_env),
                "machine": report.machine(),
            },
            "cells": [asdict(c) for c in measured["cells"]],
            "mirror": {**asdict(measured["mirror"]), **measured["mirror"].ratios()},
            "fast_path": {
                **asdict(measured["fast_path"]),
                "speedup": measured["fast_path"].speedup,
            },
        }
    )
    return data


def print_report(measured: dict[str, Any], args: argparse.Namespace) -> None:
    print(report.format_table(measured["cells"], args.requests))
    print()
    from jobshop_scheduler.bench import fastpath  # noqa: PLC0415

    print(fastpath.describe(measured["fast_path"]))
    print(report.describe_mirror(measured["mirror"]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        (__doc__ or "").split("\n\n")[0] + " Starts its own servers (schedctl serve "
        "subprocesses on loopback) and prints one table: p50/p95/p99 client latency, the "
        "server's own p50, throughput and errors per cell, then the fast path's speed-up over "
        "SB3 predict and the latency cost of mirroring to a shadow server."
    )
    add = parser.add_argument
    add("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="default: %(default)s")
    add(
        "--sizes",
        type=positive,
        nargs="+",
        metavar="JOBS",
        help=f"jobs per request (default: {' '.join(map(str, DEFAULT_SIZES))})",
    )
    add(
        "--requests",
        type=positive,
        metavar="N",
        help=f"measured calls per cell (default: {DEFAULT_REQUESTS})",
    )
    add(
        "--concurrency",
        type=positive,
        nargs="+",
        metavar="C",
        help="calls in flight (default: 1 8)",
    )
    add(
        "--quick",
        action="store_true",
        help="small numbers for a smoke run (sizes 5 12, 4 requests, concurrency 1 2); "
        "explicit options still win",
    )
    add("--auth", action="store_true", help="serve with an API key instead of --no-auth")
    add_server_options(add)
    add("--json", action="store_true", help="print the results as JSON instead of the table")
    add("--out", type=Path, metavar="DIR", help="also write latency.csv and latency.json here")
    add("--quiet", action="store_true", help="no progress bar")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults --quick changes."""
    quick = args.quick
    args.sizes = tuple(dict.fromkeys(args.sizes or (QUICK_SIZES if quick else DEFAULT_SIZES)))
    args.requests = args.requests or (QUICK_REQUESTS if quick else DEFAULT_REQUESTS)
    concurrency = args.concurrency or (QUICK_CONCURRENCY if quick else DEFAULT_CONCURRENCY)
    args.concurrency = tuple(dict.fromkeys(concurrency))
    return args


def run(args: argparse.Namespace) -> int:
    args = resolve(args)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as work:
            measured = run_all(args, Path(work))
    except BenchError as exc:
        print(f"bench-latency: {exc}", file=sys.stderr)
        return 2
    data = to_json(measured, args)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_report(measured, args)
    if args.out is not None:
        report.write_outputs(args.out, measured["cells"], data)
        print(f"wrote latency.csv and latency.json to {args.out}", file=sys.stderr)
    errors = sum(c.errors for c in measured["cells"]) + measured["mirror"].errors
    for cell in measured["cells"]:
        if cell.first_error:
            print(f"ERROR {cell.label()}: {cell.first_error}", file=sys.stderr)
    return 1 if errors else 0
