"""The plant's clients and the gateway's data plane in one: real Schedule calls, routed as the
GRPCRoute says.

``TrafficDriver`` re-reads the GRPCRoute from the API server every ``route_refresh`` seconds and
routes each call the way a Gateway API implementation would: the first rule's backendRefs
split the calls by weight (a ref without ``weight`` weighs 1; smooth weighted round robin, so the
split is exact over any stretch of calls, not just on average), and a ``RequestMirror`` filter
sends a copy (``percent``/``fraction`` of the calls) to its backend, whose answer is dropped.
A backend Service resolves to the endpoints of its real EndpointSlices (testbed.endpoints).

Every call is recorded as an ``Outcome``: which Service and track answered, the gRPC code (or
``NO_ENDPOINTS`` when a Service had no process to send to, which a real gateway answers with
503), jobs asked for and placed, latency, makespan and the legacy rule's makespan. The drills
assert on these: no client call lost or failed across weight changes and rollbacks.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
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
from testbed.endpoints import Endpoint

Obj = dict[str, Any]
NO_ENDPOINTS = "NO_ENDPOINTS"
GRPCROUTE = ("gateway.networking.k8s.io", "v1", "grpcroutes")
Resolver = Callable[[str, str], list[Endpoint]]  # (namespace, service) -> endpoints
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
    service: str
    track: str  # "" when no process answered
    code: str  # "OK", a gRPC status name, or NO_ENDPOINTS
    jobs: int
    scheduled: int
    latency_s: float
    makespan: int = 0
    baseline: int = 0
    mirrored: bool = False  # a shadow copy: the client never saw it
    sent: float = 0.0  # epoch seconds when the call was sent

    @property
    def ok(self) -> bool:
        return self.code == "OK"


class SmoothWeighted:
    """Nginx's smooth weighted round robin: exact proportions, interleaved."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, backends: tuple[Backend, ...]) -> str | None:
        live = [b for b in backends if b.weight > 0]
        if not live:
            return None
        total = sum(b.weight for b in live)
        for b in live:
            self._current[b.service] = self._current.get(b.service, 0) + b.weight
        best = max(live, key=lambda b: self._current[b.service])
        self._current[best.service] -= total
        return best.service


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
    """Sends ``rate`` calls per second through the route ``route`` in ``namespace``."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        resolve: Resolver,
        api_key: str,
        *,
        route: str = "scheduler",
        rate: float = 6.0,
        route_refresh: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.route_name = route
        self.resolve = resolve
        self.metadata = ((API_KEY_HEADER, api_key),)
        self.rate = rate
        self.route_refresh = route_refresh
        self.view = RouteView(())
        self.history: list[tuple[float, RouteView]] = []  # (epoch, view) at every change seen
        self._requests = taillard_requests(seed)
        self._balancer = SmoothWeighted()
        self._pick_endpoint = itertools.count()
        self._mirror_count = itertools.count()
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16, thread_name_prefix=f"traffic-{namespace}")
        self._threads = [
            threading.Thread(target=self._watch_route, daemon=True),
            threading.Thread(target=self._send_loop, daemon=True),
        ]
        self.route_errors = 0

    def start(self) -> TrafficDriver:
        self._read_route()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=True)
        for channel in self._channels.values():
            channel.close()

    def weights(self, service: str = "scheduler-canary") -> list[int]:
        """The weight of ``service`` at every route change the data plane applied, in order,
        without consecutive repeats."""
        with self._lock:
            seen = [view.weight_of(service) for _, view in self.history]
        return [w for i, w in enumerate(seen) if i == 0 or seen[i - 1] != w]

    def outcomes(self, since: float = 0.0, *, mirrored: bool | None = False) -> list[Outcome]:
        """Recorded calls answered at or after ``since``; client calls only by default."""
        with self._lock:
            return [
                o
                for o in self._outcomes
                if o.at >= since and (mirrored is None or o.mirrored == mirrored)
            ]

    # --- the route --------------------------------------------------------------------------------

    def _read_route(self) -> None:
        try:
            route = self.custom.get_namespaced_custom_object(
                *GRPCROUTE[:2], self.namespace, GRPCROUTE[2], self.route_name, _request_timeout=2
            )
        except (ApiException, OSError, Exception):  # API server away: keep the last view
            self.route_errors += 1
            return
        view = RouteView.of(cast(Obj, route))
        if view != self.view:
            with self._lock:
                self.history.append((time.time(), view))
        self.view = view

    def _watch_route(self) -> None:
        while not self._stop.wait(self.route_refresh):
            self._read_route()

    # --- calls ------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            view = self.view
            request = next(self._requests)
            service = self._balancer.pick(view.backends)
            if service is not None:
                self._pool.submit(self._call, service, request, False)
            if view.mirror and next(self._mirror_count) % 100 < view.mirror_percent:
                self._pool.submit(self._call, view.mirror, request, True)
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = grpc.insecure_channel(address)
            return channel

    def _call(self, service: str, request: pb.ScheduleRequest, mirrored: bool) -> None:
        endpoints = self.resolve(self.namespace, service)
        jobs = len(request.jobs)
        started, sent = time.monotonic(), time.time()
        if not endpoints:
            self._record(Outcome(sent, service, "", NO_ENDPOINTS, jobs, 0, 0.0,
                                 mirrored=mirrored, sent=sent))  # fmt: skip
            return
        endpoint = endpoints[next(self._pick_endpoint) % len(endpoints)]
        stub = pb_grpc.SchedulerStub(self._channel(endpoint.address))  # type: ignore[no-untyped-call]
        try:
            answer: pb.ScheduleResponse = stub.Schedule(
                request, metadata=self.metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            self._record(Outcome(time.time(), service, endpoint.track, code, jobs, 0,
                                 time.monotonic() - started, mirrored=mirrored,
                                 sent=sent))  # fmt: skip
            return
        scheduled = len({a.job_id for a in answer.assignments})
        self._record(
            Outcome(
                time.time(), service, endpoint.track, "OK", jobs, scheduled,
                time.monotonic() - started, answer.makespan, answer.baseline_makespan, mirrored,
                sent,
            )
        )  # fmt: skip

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
