"""Scheduler servers as real processes, for the load benchmarks (`bench-latency`, `soak`).

The server runs as ``schedctl serve`` in a process of its own, not in the benchmark's: a client
sharing the server's interpreter would share its GIL, and every millisecond the client threads
spend would show up as server latency. A subprocess on loopback is what a plant client talks to,
less the network. Each server writes its JSON log to a file in a work folder; a server that
exits or never turns SERVING raises ``BenchError`` with the tail of that log.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
from prometheus_client.parser import text_string_to_metric_families

from jobshop_scheduler.arg_types import positive
from jobshop_scheduler.service import client

START_TIMEOUT_S = 300.0  # compiling the numba kernels on a first start, on a busy machine
STOP_TIMEOUT_S = 30.0


class BenchError(RuntimeError):
    """A benchmark cannot run: a server that does not start, a model that does not load."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def terminate(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGTERM (a graceful drain), SIGKILL after ``grace`` seconds; False if it had ended."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux: VmRSS in /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read the memory of process {pid}: {exc}") from exc
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"process {pid} reports no VmRSS")


def pin_process(pid: int, cpus: set[int]) -> None:
    """CPU affinity of all threads of ``pid``; threads it starts later inherit it."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(tid), cpus)
    except OSError as exc:
        raise BenchError(f"cannot pin process {pid} to CPUs {sorted(cpus)}: {exc}") from exc


def split_cpus() -> tuple[set[int], set[int]] | None:
    """CPUs for (the measured server, a second process), or None with fewer than two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


@dataclass
class ServerProcess:
    """One ``schedctl serve`` on loopback, no TLS; ``keys`` None serves with --no-auth."""

    name: str
    model_dir: Path
    workdir: Path
    track: str = "stable"
    keys: Path | None = None
    mirror_config: Path | None = None
    faults_file: Path | None = None  # honoured only with SCHEDULER_ENABLE_FAULTS=1 in ``env``
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)  # on top of this process's environment
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError(f"server {self.name} is not running")
        return self._proc.pid

    def argv(self) -> list[str]:
        argv = [
            sys.executable, "-m", "jobshop_scheduler.cli", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--metrics-port", str(self.metrics_port),
            "--model-dir", str(self.model_dir), "--track", self.track,
            "--workers", str(self.workers), "--log-format", "json",
        ]  # fmt: skip
        argv += ["--keys", str(self.keys)] if self.keys is not None else ["--no-auth"]
        if self.mirror_config is not None:
            argv += ["--mirror-config", str(self.mirror_config)]
        if self.faults_file is not None:
            argv += ["--faults-file", str(self.faults_file)]
        return argv

    def start(self) -> None:
        """Launch the process; ``wait_serving`` waits for its model checks."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )

    def wait_serving(self, timeout: float = START_TIMEOUT_S, poll_s: float = 0.3) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise BenchError(f"server {self.name} exited ({code}):\n{log_tail(self.log_path)}")
            try:
                if client.health_status(self.address, timeout=1.0, service="") == "SERVING":
                    return
            except grpc.RpcError:
                pass
            time.sleep(poll_s)
        raise BenchError(
            f"server {self.name} not SERVING after {timeout:.0f} s:\n{log_tail(self.log_path)}"
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def pin(self, cpus: set[int]) -> None:
        """Run every thread of the server (now and later) on ``cpus`` only."""
        pin_process(self.pid, cpus)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``, scraped now."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def stop(self) -> None:
        """SIGTERM (graceful drain), then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, STOP_TIMEOUT_S)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def parse_env(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (an argparse type) for ``--server-env``."""
    name, sep, value = text.partition("=")
    if not sep or not name or not name.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def add_server_options(add: Callable[..., object]) -> None:
    """Options both load commands pass to their ``schedctl serve`` processes."""
    add(
        "--server-workers",
        type=positive,
        default=2,
        help="planner threads of the server (schedctl serve --workers; default: %(default)s)",
    )
    add(
        "--server-env",
        type=parse_env,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the server processes, e.g. OPENBLAS_NUM_THREADS=1 "
        "(repeatable; default: this process's environment)",
    )


def start_all(servers: list[ServerProcess], timeout: float = START_TIMEOUT_S) -> None:
    """Launch every server at once (model loading overlaps), then wait for each."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_serving(timeout)
