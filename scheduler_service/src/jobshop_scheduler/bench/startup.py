"""Cold-start figures of the scheduler, each the median of several fresh processes.

A rollout step waits for candidate pods to turn ready, the HPA adds pods under load, and a plant
engineer runs ``schedctl`` by hand: start-up time is paid on every one. Each figure here is
measured on a new process with ``PYTHONDONTWRITEBYTECODE=1`` (as the image and this workplace
run), so the next regression shows as a row over its target. ``--install-size`` also installs
the serving set and the full set into scratch environments with uv and weighs them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from jobshop_scheduler import table
from jobshop_scheduler.arg_types import positive
from jobshop_scheduler.bench.report import machine
from jobshop_scheduler.bench.servers import BenchError, ServerProcess
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR

WORKSPACE = DEFAULT_MODEL_DIR.parents[1]
DEFAULT_REQUEST = WORKSPACE / "examples" / "requests" / "small.json"
FIRST_ANSWER_JOBS = 170
SCHEDCTL = [sys.executable, "-m", "jobshop_scheduler.cli"]


@dataclass(frozen=True)
class Figure:
    name: str
    target: float | None
    unit: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "ok" if self.median <= self.target else "OVER"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def timed_command(argv: Sequence[str]) -> float:
    """Wall seconds of one process, start to exit; a failure is a BenchError with its output."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[2:])} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def serve_once(model_dir: Path, workdir: Path) -> tuple[float, float]:
    """(process start -> health SERVING, the first 170-job answer after it), in seconds."""
    from jobshop_scheduler.instances.flexible import production_like  # noqa: PLC0415
    from jobshop_scheduler.service import client  # noqa: PLC0415
    from jobshop_scheduler.service.convert import problem_to_pb  # noqa: PLC0415

    request = problem_to_pb(production_like(FIRST_ANSWER_JOBS, seed=1), "ppo", None)
    server = ServerProcess("startup", model_dir, workdir, env={"PYTHONDONTWRITEBYTECODE": "1"})
    started = time.perf_counter()
    with server:
        server.wait_serving(timeout=120.0, poll_s=0.01)
        serving = time.perf_counter() - started
        asked = time.perf_counter()
        answer = client.schedule(server.address, request, timeout=30.0)
        first = time.perf_counter() - asked
    if answer.policy_used != "ppo":
        raise BenchError(f"the first answer came from {answer.policy_used}, not the model")
    return serving, first


def measure(args: argparse.Namespace) -> list[Figure]:
    local = [
        *SCHEDCTL,
        "schedule",
        str(args.request),
        "--local",
        "--model-dir",
        str(args.model_dir),
    ]
    commands: list[tuple[str, float | None, Callable[[], float]]] = [
        ("schedctl --help", 0.5, lambda: timed_command([*SCHEDCTL, "--help"])),
        ("schedule --local (default budget)", 1.5, lambda: timed_command(local)),
        ("schedule --local --time-budget-ms 0", None, lambda: timed_command(
            [*local, "--time-budget-ms", "0"])),
    ]  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name, _, _ in commands}
    serving: list[float] = []
    first: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch,
        tqdm(total=args.runs, desc="start-up runs", file=sys.stderr, disable=args.quiet) as bar,
    ):
        for _ in range(args.runs):
            for name, _, run in commands:
                samples[name].append(run())
            up, answer = serve_once(args.model_dir, Path(scratch))
            serving.append(up)
            first.append(answer)
            bar.update()
    figures = [Figure(name, target, "s", tuple(samples[name])) for name, target, _ in commands]
    figures.append(Figure("serve: start -> SERVING", 2.0, "s", tuple(serving)))
    figures.append(Figure(f"first {FIRST_ANSWER_JOBS}-job answer after SERVING", 1.0, "s",
                          tuple(first)))  # fmt: skip
    if args.install_size:
        figures += install_sizes()
    return figures


def _size_mb(root: Path) -> float:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total / 1e6


def install_sizes() -> list[Figure]:
    """The serving set (what the image installs) and the full set (every extra), in MB."""
    figures = []
    for name, extras, target in (
        ("serving set", (), 400.0),
        ("full set", ("train", "plots", "cpsat"), None),
    ):
        with tempfile.TemporaryDirectory(prefix="bench-install-") as venv:
            argv = [
                "uv",
                "sync",
                "--frozen",
                "--no-dev",
                "--no-editable",
                "--compile-bytecode",
                "--package",
                "jobshop-scheduler",
                *(f"--extra={e}" for e in extras),
            ]
            env = {**os.environ, "UV_PROJECT_ENVIRONMENT": venv}
            done = subprocess.run(
                argv, cwd=WORKSPACE, env=env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise BenchError(f"uv sync of the {name} failed:\n{done.stderr[-2000:]}")
            figures.append(Figure(f"installed size, {name}", target, "MB", (_size_mb(Path(venv)),)))
    return figures


def format_table(figures: Sequence[Figure], runs: int) -> str:
    head = f"start-up: median of {runs} fresh processes, PYTHONDONTWRITEBYTECODE=1 ({machine()})"
    rows = [
        (f.name, f"{f.median:.2f} {f.unit}", f"{min(f.samples):.2f} {f.unit}",
         f"{max(f.samples):.2f} {f.unit}", f"{f.target:g} {f.unit}" if f.target else "-",
         f.verdict)
        for f in figures
    ]  # fmt: skip
    headers = ("", "median", "min", "max", "target", "")
    return head + "\n" + table.render(headers, rows, right=range(1, 5), indent="  ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n")[0] + (
        " Prints one table (median, min, max, target); exit 1 when a median is over its target."
    )
    add = parser.add_argument
    add("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="default: %(default)s")
    add("--request", type=Path, default=DEFAULT_REQUEST, help="default: %(default)s")
    add("--runs", type=positive, default=5, help="processes per figure (default: 5)")
    add(
        "--install-size",
        action="store_true",
        help="also install the serving and the full set with uv (frozen lock) and weigh them",
    )
    add("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if not args.request.is_file():
        print(f"schedctl bench-startup: --request {args.request}: no such file", file=sys.stderr)
        return 2
    try:
        figures = measure(args)
    except BenchError as exc:
        print(f"schedctl bench-startup: {exc}", file=sys.stderr)
        return 1
    print(format_table(figures, args.runs))
    return 1 if any(f.verdict == "OVER" for f in figures) else 0
