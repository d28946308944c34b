"""Soak test (``schedctl soak``): does a server stay correct and flat in memory under load?

One ``schedctl serve`` subprocess is driven at ``--concurrency`` (default 8) for ``--duration``
seconds (default 600) with production-like requests of ``--jobs`` jobs (default 170), while its
resident memory (VmRSS) is sampled every ``--sample-every`` seconds. Memory right after warm-up
(the first ``--warmup`` seconds, during which allocators and caches fill) is the baseline; the
run passes when the memory at the end exceeds it by less than ``--max-growth`` percent and no
call failed. Not a CI job: ten minutes of load is a release check. Exit codes: 0 PASS, 1 FAIL,
2 a server that would not start.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.arg_types import positive, positive_number
from jobshop_scheduler.bench.load import drive, payloads, percentile
from jobshop_scheduler.bench.report import jsonable, machine
from jobshop_scheduler.bench.servers import BenchError, ServerProcess, add_server_options
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR

MIB = 1024 * 1024
POOL = 8


@dataclass(frozen=True)
class SoakResult:
    jobs: int
    policy: str
    concurrency: int
    duration_s: float
    warmup_s: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rss_start_bytes: int
    rss_end_bytes: int
    rss_peak_bytes: int
    max_growth_pct: float
    first_error: str = ""

    @property
    def growth_pct(self) -> float:
        return 100 * (self.rss_end_bytes / self.rss_start_bytes - 1)

    @property
    def passed(self) -> bool:
        return self.requests > 0 and self.errors == 0 and self.growth_pct < self.max_growth_pct


def format_table(r: SoakResult) -> str:
    rate = r.requests / r.duration_s if r.duration_s > 0 else 0.0
    rows = [
        ("requests", f"{r.requests} ({rate:.1f} req/s)"),
        ("errors", f"{r.errors}" + (f" (first: {r.first_error})" if r.first_error else "")),
        ("latency p50", f"{r.p50_ms:.1f} ms"),
        ("latency p99", f"{r.p99_ms:.1f} ms"),
        (f"RSS after {r.warmup_s:.0f} s", f"{r.rss_start_bytes / MIB:.1f} MiB"),
        ("RSS at end", f"{r.rss_end_bytes / MIB:.1f} MiB"),
        ("RSS peak", f"{r.rss_peak_bytes / MIB:.1f} MiB"),
        ("growth", f"{r.growth_pct:+.2f}% (limit < {r.max_growth_pct:g}%)"),
        ("verdict", "PASS" if r.passed else "FAIL"),
    ]
    head = (
        f"soak: production-like {r.jobs} jobs, {r.policy}, concurrency {r.concurrency}, "
        f"{r.duration_s:.0f} s ({machine()})"
    )
    return head + "\n" + table.render(None, rows, indent="  ")


def soak(server: ServerProcess, args: argparse.Namespace) -> SoakResult:
    """Drive the SERVING ``server`` for the duration, sampling its memory as it goes."""
    data = payloads("production", args.jobs, args.policy, POOL)
    warmup = min(args.warmup, args.duration / 5)
    every = min(args.sample_every, max(args.duration / 5, 0.1))
    total = round(args.duration)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample(bar: tqdm[NoReturn]) -> None:
        while True:
            samples.append((time.monotonic() - started, server.rss_bytes()))
            bar.n = min(round(samples[-1][0]), total)
            bar.set_postfix_str(f"RSS {samples[-1][1] / MIB:.0f} MiB")
            if stop.wait(every):
                return

    with tqdm(total=total, desc="soak", unit="s", file=sys.stderr, disable=args.quiet) as bar:
        sampler = threading.Thread(target=sample, args=(bar,), name="soak-rss", daemon=True)
        sampler.start()
        try:
            result = drive(
                server.address, data, concurrency=args.concurrency, duration_s=args.duration
            )
        finally:
            stop.set()
            sampler.join()
    samples.append((time.monotonic() - started, server.rss_bytes()))
    start = next(rss for t, rss in samples if t >= warmup)
    return SoakResult(
        args.jobs, args.policy, args.concurrency, result.wall_s, warmup, result.ok,
        result.error_count, percentile(result.latencies_ms, 50),
        percentile(result.latencies_ms, 99), start, samples[-1][1],
        max(rss for _, rss in samples), args.max_growth, result.first_error,
    )  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    summary = (__doc__ or "").split("\n\n")[0]
    parser.description = (
        f"{summary} Exit 1 (FAIL) on any failed call or memory growth past --max-growth after "
        "warm-up."
    )
    add = parser.add_argument
    add("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="default: %(default)s")
    add("--duration", type=positive_number, default=600.0, help="seconds (default: %(default)s)")
    add("--concurrency", type=positive, default=8, help="calls in flight (default: 8)")
    add("--jobs", type=positive, default=170, help="jobs per request (default: 170)")
    add(
        "--policy", choices=("ppo", "heuristic", "auto"), default="ppo", help="default: %(default)s"
    )
    add(
        "--warmup",
        type=positive_number,
        default=30.0,
        help="seconds before the memory baseline; at most a fifth of the duration "
        "(default: %(default)s)",
    )
    add(
        "--sample-every",
        type=positive_number,
        default=5.0,
        help="seconds between memory samples (default: %(default)s)",
    )
    add(
        "--max-growth",
        type=positive_number,
        default=5.0,
        help="memory growth after warm-up that fails the run, in %% (default: %(default)s)",
    )
    add_server_options(add)
    add("--json", action="store_true", help="print the result as JSON instead of the table")
    add("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as work:
            server = ServerProcess(
                "server", args.model_dir, Path(work), workers=args.server_workers,
                env=dict(args.server_env),
            )  # fmt: skip
            with server:
                print(f"starting the server (model {args.model_dir}) ...", file=sys.stderr)
                server.wait_serving()
                result = soak(server, args)
    except BenchError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    if args.json:
        data = {**asdict(result), "growth_pct": result.growth_pct, "passed": result.passed}
        print(json.dumps(jsonable(data), indent=2))
    else:
        print(format_table(result))
    return 0 if result.passed else 1
