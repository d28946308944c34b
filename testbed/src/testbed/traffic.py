"""The plant's clients, calling the plant's gateway; and the route's history as the API server
held it.

``TrafficDriver`` sends ``rate`` real Schedule calls a second to the gateway's address (Traefik,
``testbed.gateway``) with the plant's host name as authority, so the gateway routes them by the
plant's GRPCRoute: its weights, to the pod IPs of the backend Services' EndpointSlices. Shadow
copies are the stable pods' own work (the application-level mirror), never a client's. Each
answer's ``x-scheduler-track`` header says which track served it.

Every call is recorded as an ``Outcome``: the track that answered, the gRPC code, jobs asked for
and placed, latency, makespan and the legacy rule's makespan. The drills assert on these: no
client call lost or failed across weight changes and rollbacks.

``RouteHistory`` reads the GRPCRoute every ``period`` seconds and keeps each change: the weights a
rollout wrote, in order.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import grpc
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.instances.taillard import taillard
from jobshop_scheduler.service.auth import API_KEY_HEADER
from jobshop_scheduler.service.convert import problem_to_pb
from jobshop_scheduler.service.servicer import TRACK_HEADER
from testbed.loops import Loop

Obj = dict[str, Any]
GRPCROUTE = ("gateway.networking.k8s.io", "v1", "grpcroutes")
CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Backend:
    service: str
    weight: int


@dataclass(frozen=True)
class RouteView:
    """What the data plane acts on: the split and the mirror of the route's first rule."""

    backends: tuple[Backend, ...]
    mirror: str | None = None  # Service that gets the copies
    mirror_percent: int = 0

    @staticmethod
    def of(route: Obj) -> RouteView:
        rules = (route.get("spec") or {}).get("rules") or []
        if not rules:
            return RouteView(())
        rule = rules[0]
        backends = tuple(
            Backend(ref["name"], int(ref.get("weight", 1)))
            for ref in rule.get("backendRefs") or []
            if ref.get("kind", "Service") == "Service"
        )
        for flt in rule.get("filters") or []:
            if flt.get("type") != "RequestMirror":
                continue
            mirror = flt.get("requestMirror") or {}
            if "percent" in mirror:
                percent = int(mirror["percent"])
            elif "fraction" in mirror:
                fraction = mirror["fraction"]
                percent = round(100 * fraction["numerator"] / fraction.get("denominator", 100))
            else:
                percent = 100
            return RouteView(backends, mirror["backendRef"]["name"], percent)
        return RouteView(backends)

    def weight_of(self, service: str) -> int:
        total = sum(b.weight for b in self.backends)
        mine = sum(b.weight for b in self.backends if b.service == service)
        return round(100 * mine / total) if total else 0


@dataclass(frozen=True)
class Outcome:
    at: float  # epoch seconds when the answer came
    track: str  # the answering pod's x-scheduler-track; "" when no scheduler answered
    code: str  # "OK" or a gRPC status name
    jobs: int
    scheduled: int
    latency_s: float
    makespan: int = 0
    baseline: int = 0
    sent: float = 0.0  # epoch seconds when the call was sent

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def taillard_requests(
    seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((20, 10), (30, 10))
) -> Iterator[pb.ScheduleRequest]:
    """An endless stream of classic job-shop requests from Taillard's generator (varied sizes)."""
    rng = random.Random(seed)
    for i in itertools.count():
        n, m = sizes[i % len(sizes)]
        problem = taillard(n, m, rng.randrange(1, 2**31 - 1), rng.randrange(1, 2**31 - 1))
        yield problem_to_pb(problem, "auto")


class TrafficDriver:
    """Sends ``rate`` calls per second to ``gateway`` (host:port) as ``authority`` (none at
    rate 0)."""

    def __init__(
        self,
        gateway: str,
        authority: str,
        api_key: str,
        *,
        rate: float = 6.0,
        seed: int = 0,
    ) -> None:
        self.metadata = ((API_KEY_HEADER, api_key),)
        self.rate = rate
        self._requests = taillard_requests(seed)
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(
            gateway, options=[("grpc.default_authority", authority)]
        )
        self._stub = pb_grpc.SchedulerStub(self._channel)  # type: ignore[no-untyped-call]
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16, thread_name_prefix=f"clients-{authority}")
        self._sender = threading.Thread(target=self._send_loop, daemon=True)

    def start(self) -> TrafficDriver:
        if self.rate > 0:
            self._sender.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sender.is_alive():
            self._sender.join(timeout=5)
        self._pool.shutdown(wait=True)
        self._channel.close()

    def wait_routed(self, timeout: float) -> None:
        """Until a call through the gateway is answered (not recorded): a gateway reports a
        route accepted before its data plane has loaded it."""
        deadline = time.monotonic() + timeout
        request = next(self._requests)
        while True:
            try:
                self._stub.Schedule(request, metadata=self.metadata, timeout=CALL_TIMEOUT_S)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def outcomes(self, since: float = 0.0) -> list[Outcome]:
        """Recorded calls answered at or after ``since``."""
        with self._lock:
            return [o for o in self._outcomes if o.at >= since]

    def _send_loop(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._call, next(self._requests))
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _call(self, request: pb.ScheduleRequest) -> None:
        jobs = len(request.jobs)
        started, sent = time.monotonic(), time.time()
        try:
            answer, call = self._stub.Schedule.with_call(
                request, metadata=self.metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            failed = cast(grpc.Call, exc)
            code = failed.code().name if hasattr(failed, "code") else "UNKNOWN"
            track = dict(failed.initial_metadata() or ()).get(TRACK_HEADER, "")
            self._record(Outcome(time.time(), str(track), code, jobs, 0,
                                 time.monotonic() - started, sent=sent))  # fmt: skip
            return
        track = dict(call.initial_metadata()).get(TRACK_HEADER, "")
        scheduled = len({a.job_id for a in answer.assignments})
        self._record(
            Outcome(
                time.time(), str(track), "OK", jobs, scheduled, time.monotonic() - started,
                answer.makespan, answer.baseline_makespan, sent,
            )
        )  # fmt: skip

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)


class RouteHistory:
    """The plant's GRPCRoute read every ``period`` seconds; each change kept with its time."""

    def __init__(
        self, api: client.ApiClient, namespace: str, *, name: str = "scheduler", period: float = 0.1
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.name = name
        self.view = RouteView(())
        self.history: list[tuple[float, RouteView]] = []  # (epoch, view) at every change seen
        self.errors = 0
        self._lock = threading.Lock()
        self._loop = Loop(f"route-{namespace}", period, self._poll)

    def start(self) -> RouteHistory:
        self.read()
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def _poll(self) -> None:
        self.read()

    def read(self) -> Obj | None:
        """The route now (None when the API server is away), its view recorded if it changed."""
        try:
            route = cast(
                Obj,
                self.custom.get_namespaced_custom_object(
                    *GRPCROUTE[:2], self.namespace, GRPCROUTE[2], self.name, _request_timeout=2
                ),
            )
        except (ApiException, OSError, Exception):  # API server away: keep the last view
            self.errors += 1
            return None
        view = RouteView.of(route)
        with self._lock:
            if view != self.view:
                self.history.append((time.time(), view))
            self.view = view
        return route

    def weights(self, service: str = "scheduler-canary") -> list[int]:
        """The weight of ``service`` at every route change seen, in order, without consecutive
        repeats."""
        with self._lock:
            seen = [view.weight_of(service) for _, view in self.history]
        return [w for i, w in enumerate(seen) if i == 0 or seen[i - 1] != w]
