"""Fixtures for real scheduler servers on loopback: a tiny model, keys, certificates, servers.

Servers run in-process, each on its own event loop in a background thread, so one server can
serve a whole module (model loading and the parity check run once) while tests call it with
plain blocking clients, asyncio clients or hypothesis. Tests never depend on the shipped model:
the session builds a tiny, untrained but valid model directory (zip + card) of its own.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import pytest

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.rl.model_store import MODEL_NAME
from jobshop_scheduler.service.config import ServerConfig
from jobshop_scheduler.service.keys import generate_key
from jobshop_scheduler.service.server import RunningServer, serve
from testbed.pki import CertificateAuthority, CertPair

TRACK = "canary"  # not the default, so a hard-coded "stable" label would show
READY_TIMEOUT = 120.0

# The metric contract of shared DESIGN.md: every series the service must export.
CONTRACT = (
    "scheduler_requests_total",
    "scheduler_request_duration_seconds_bucket",
    "scheduler_request_duration_seconds_count",
    "scheduler_jobs_requested_total",
    "scheduler_jobs_scheduled_total",
    "scheduler_makespan_ratio_bucket",
    "scheduler_batches_total",
    "scheduler_fallback_total",
    "scheduler_model_info",
)


def build_tiny_model(out: Path, rows: int = 20) -> Path:
    """An untrained policy saved by SB3, with a card that vouches for it."""
    from sb3_contrib import MaskablePPO  # noqa: PLC0415 - torch only when a test needs a model

    from jobshop_scheduler.instances.flexible import production_like  # noqa: PLC0415
    from jobshop_scheduler.ops.train_cli import write_card  # noqa: PLC0415
    from jobshop_scheduler.rl.env import JobShopEnv  # noqa: PLC0415
    from jobshop_scheduler.rl.policy import JobScorerPolicy  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    env = JobShopEnv(problem=production_like(rows, seed=0), max_jobs=rows)
    model = MaskablePPO(JobScorerPolicy, env, n_steps=64, batch_size=64, seed=0, device="cpu")
    model.save(out / MODEL_NAME)
    write_card(out, {"note": "untrained, for the gRPC tests"}, "test-tiny-1")
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def api_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A client key and the keys file (hash only) that admits it."""
    key, line = generate_key("grpc-tests")
    path = tmp_path_factory.mktemp("keys") / "keys"
    path.write_text(line + "\n")
    return key, path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, CertPair]:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    server = ca.issue(
        "server", "127.0.0.1", ip_sans=("127.0.0.1",), dns_sans=("localhost",), server=True
    )
    return ca, server


class ServerThread:
    """``serve(config)`` on a private event loop in a daemon thread."""

    def __init__(self, config: ServerConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = environ if environ is not None else {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="grpc-test-server", daemon=True)
        self._running: RunningServer | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def running(self) -> RunningServer:
        assert self._running is not None, "server not started"
        return self._running

    @property
    def address(self) -> str:
        return self.running.address

    def start(self) -> ServerThread:
        self._thread.start()
        self._running = self.call(serve(self.config, self.environ))
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        return bool(self.call(self.running.wait_ready(timeout), timeout + 5))

    def stop(self) -> None:
        if self._running is not None:
            self.call(self._running.stop(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def base_config(model_dir: Path, **overrides: Any) -> ServerConfig:
    """Loopback, any free ports, no auth unless overridden."""
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        model_dir=model_dir,
        track=TRACK,
        no_auth=True,
        grace_s=0.5,
        time_budget_ms=0,  # greedy answers unless a test asks for the search
    )
    return replace(config, **overrides)


ServerFactory = Callable[..., AbstractContextManager[ServerThread]]


@pytest.fixture(scope="session")
def server_thread() -> ServerFactory:
    """``with server_thread(config, environ=None, ready=True) as s:`` a started server."""

    @contextmanager
    def factory(
        config: ServerConfig, environ: Mapping[str, str] | None = None, ready: bool = True
    ) -> Iterator[ServerThread]:
        with ServerThread(config, environ) as server:
            if ready:
                assert server.wait_ready(), f"not ready: {server.running.gate.reason}"
            yield server

    return factory


class RecordingShadow(pb_grpc.SchedulerServicer):
    """A stand-in shadow scheduler that records the request ids mirrored to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str]]] = []

    def Schedule(
        self, request: pb.ScheduleRequest, context: grpc.ServicerContext
    ) -> pb.ScheduleResponse:
        metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        self.received.append((request.request_id, metadata))
        return pb.ScheduleResponse(request_id=request.request_id)


@dataclass
class MainServer:
    """The shared server: auth on, audit on (rotating small), mirroring, a faults file."""

    thread: ServerThread
    key: str
    audit_dir: Path
    shadow: RecordingShadow
    faults_file: Path

    @property
    def address(self) -> str:
        return self.thread.address

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.thread.running.metrics_port}/metrics"

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.key),)


MAIN_MAX_JOBS = 300
MAIN_MAX_TABLE_CELLS = 200_000  # operations x machines; the largest test request has 90 000
MAIN_MAX_OPERATIONS = 20_000  # the largest test request has 4500


@pytest.fixture(scope="session")
def main_server(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    api_key: tuple[str, Path],
    server_thread: ServerFactory,
) -> Iterator[MainServer]:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    root = tmp_path_factory.mktemp("main")
    shadow = RecordingShadow()
    shadow_server = grpc.server(ThreadPoolExecutor(2))
    pb_grpc.add_SchedulerServicer_to_server(shadow, shadow_server)
    shadow_port = shadow_server.add_insecure_port("127.0.0.1:0")
    shadow_server.start()
    mirror = root / "mirror.json"
    mirror.write_text(json.dumps({"target": f"127.0.0.1:{shadow_port}", "percent": 100}))
    faults = root / "faults.json"  # would fail every call, but the env gate is off
    faults.write_text(json.dumps({"error_rate": 1.0, "drop_job_fraction": 0.5}))
    key, keys_path = api_key
    config = base_config(
        tiny_model_dir,
        no_auth=False,
        keys_path=keys_path,
        audit_dir=root / "audit",
        audit_max_bytes=4000,
        audit_backups=3,
        max_jobs=MAIN_MAX_JOBS,
        max_table_cells=MAIN_MAX_TABLE_CELLS,
        max_operations=MAIN_MAX_OPERATIONS,
        mirror_config=mirror,
        faults_file=faults,
    )
    try:
        with server_thread(config) as thread:
            yield MainServer(thread, key, root / "audit", shadow, faults)
    finally:
        shadow_server.stop(None)
