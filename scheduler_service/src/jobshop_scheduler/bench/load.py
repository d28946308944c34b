"""Requests and a closed-loop load driver for the gRPC benchmarks.

Two request shapes, each drawn from a seed:

- ``classic``: the latency target's shape, N jobs x 10 operations on 20 machines. Taillard's
  generator draws an N x 20 instance (durations 1-99, each job a random machine order) and each
  job keeps the first 10 operations of its order: 10 distinct machines out of 20, one machine
  per operation, all jobs released at 0.
- ``production``: ``instances.flexible.production_like`` (10-20 machines, 10-20 operations per
  job, 1-3 eligible machines per operation, releases, due dates and priorities).

The driver keeps ``concurrency`` calls in flight (one thread each, one shared channel) until a
request count or a deadline is reached. Requests are serialized once, before timing starts, so
the client's CPU time per call is small next to the server's.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from jobshop_scheduler.api import SCHEDULE_METHOD, pb
from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.instances.taillard import taillard_arrays
from jobshop_scheduler.service.auth import API_KEY_HEADER
from jobshop_scheduler.service.client import open_channel
from jobshop_scheduler.service.convert import problem_to_pb

CLASSIC_MACHINES = 20
CLASSIC_OPERATIONS = 10
KINDS = ("classic", "production")
KIND_NOTES = {
    "classic": f"Taillard-generated, {CLASSIC_OPERATIONS} operations per job on "
    f"{CLASSIC_MACHINES} machines",
    "production": "production_like: flexible, 10-20 ops per job, 10-20 machines",
}
CALL_TIMEOUT_S = 120.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # as the server allows
_SEED_SPAN = 2**31 - 2


def classic_problem(n_jobs: int, seed: int) -> Problem:
    """N jobs x 10 operations on 20 machines, from Taillard's generator (module docstring)."""
    rng = np.random.default_rng(seed)
    time_seed, machine_seed = (int(s) for s in rng.integers(1, _SEED_SPAN, size=2))
    durations, orders = taillard_arrays(n_jobs, CLASSIC_MACHINES, time_seed, machine_seed)
    machines = tuple(f"M{k + 1}" for k in range(CLASSIC_MACHINES))
    jobs = tuple(
        Job(
            id=f"J{j + 1}",
            operations=tuple(
                Operation(f"J{j + 1}-{pos + 1}", (Alternative(machines[k], p),))
                for pos, (k, p) in enumerate(
                    zip(orders[j][:CLASSIC_OPERATIONS], durations[j], strict=False)
                )
            ),
        )
        for j in range(n_jobs)
    )
    name = f"classic-{n_jobs}x{CLASSIC_OPERATIONS}on{CLASSIC_MACHINES}-s{seed}"
    return Problem(machines=machines, jobs=jobs, request_id=name)


def make_problem(kind: str, n_jobs: int, seed: int) -> Problem:
    if kind == "classic":
        return classic_problem(n_jobs, seed)
    if kind == "production":
        return production_like(n_jobs, seed=seed)
    raise ValueError(f"unknown request kind {kind!r}; known: {', '.join(KINDS)}")


def payloads(kind: str, n_jobs: int, policy: str, pool: int, seed: int = 0) -> list[bytes]:
    """``pool`` distinct serialized requests of one shape; the driver cycles through them."""
    return [
        problem_to_pb(make_problem(kind, n_jobs, seed + i), policy).SerializeToString()
        for i in range(pool)
    ]


@dataclass
class LoadResult:
    """What a run of calls measured: client latencies, the server's own, and failures."""

    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def client_ms(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def server_p50_ms(self) -> float:
        return percentile(self.server_ms, 50)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation); NaN for no values."""
    return float(np.percentile(values, q)) if values else float("nan")


def _identity(payload: bytes) -> bytes:
    return payload


class _Run:
    """Shared state of one ``drive`` call; every worker thread records into it."""

    def __init__(
        self, requests: int | None, until: float | None, on_done: Callable[[], object] | None
    ) -> None:
        self.requests, self.until, self.on_done = requests, until, on_done
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._issued = itertools.count()

    def next_index(self) -> int | None:
        with self._lock:
            i = next(self._issued)
        if self.requests is not None and i >= self.requests:
            return None
        if self.until is not None and time.monotonic() >= self.until:
            return None
        return i

    def record(self, latency_ms: float, answer: pb.ScheduleResponse | None, error: str) -> None:
        with self._lock:
            if answer is not None:
                self.result.latencies_ms.append(latency_ms)
                self.result.server_ms.append(answer.latency_ms)
            else:
                self.result.errors[error.split(":", 1)[0]] += 1
                self.result.first_error = self.result.first_error or error
        if self.on_done is not None:
            self.on_done()


def _worker(
    channel: grpc.Channel,
    run: _Run,
    payloads: Sequence[bytes],
    metadata: tuple[tuple[str, str], ...],
    timeout_s: float,
) -> None:
    call = channel.unary_unary(
        SCHEDULE_METHOD,
        request_serializer=_identity,
        response_deserializer=pb.ScheduleResponse.FromString,
    )
    while (i := run.next_index()) is not None:
        started = time.perf_counter()
        try:
            answer = call(payloads[i % len(payloads)], timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            run.record(0.0, None, f"{code}: {details}")
        else:
            run.record((time.perf_counter() - started) * 1000, answer, "")


def drive(
    address: str,
    payloads: Sequence[bytes],
    *,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = None,
    api_key: str | None = None,
    on_done: Callable[[], object] | None = None,
    tls_ca: Path | None = None,
    timeout_s: float = CALL_TIMEOUT_S,
) -> LoadResult:
    """Keep ``concurrency`` calls in flight until ``requests`` were issued or time is up.

    ``timeout_s`` bounds each call; ``tls_ca``: a TLS channel trusting that CA.
    """
    if not payloads or concurrency < 1 or (requests is None and duration_s is None):
        raise ValueError("drive needs payloads, concurrency >= 1 and a request count or duration")
    until = time.monotonic() + duration_s if duration_s is not None else None
    run = _Run(requests, until, on_done)
    metadata = ((API_KEY_HEADER, api_key),) if api_key else ()
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    with open_channel(address, tls_ca, options) as channel:
        threads = [
            threading.Thread(
                target=_worker,
                args=(channel, run, payloads, metadata, timeout_s),
                name=f"load-{k}",
            )
            for k in range(concurrency)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run.result.wall_s = time.perf_counter() - started
    return run.result
