"""The metric contract of shared DESIGN.md, and the HTTP endpoint Prometheus scrapes.

The operator's analysis queries, the chart's alerts and the dashboards all read these series by
name, so they are defined in one place, each labelled ``track`` (stable, canary or shadow) so
one query can compare versions. The class owns its registry instead of using the process-wide
default: two servers in one test process must not share counters, and nothing else registered in
the process leaks onto the scrape. Series a rule divides by (requests by code, the fallback
reasons) are created at zero when the server starts, so a rate() has data before the first call.

``scheduler_machine_time_saved`` is a running sum that goes down when an answer is longer
than the legacy rule's, so it is a gauge (a counter may not decrease, and ``increase()`` would
read every decrease as a restart): read it with ``delta()`` or as a value, summed over pods.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
    start_http_server,
)

# Covers a 1 ms answer to a 30 s batch; 5 and 10 s are the warn and rollback thresholds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    7.5, 10.0, 15.0, 20.0, 30.0)  # fmt: skip
# Answer makespan over the legacy rule's: below 1 the policy wins, above 1 it loses.
RATIO_BUCKETS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 1.0, 1.025, 1.05, 1.1, 1.2,
                 1.5, 2.0)  # fmt: skip
PRESET_CODES = (
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
)
FALLBACK_REASONS = ("no_model", "policy_error", "invalid_schedule")
# Final makespan over the greedy pass's: how much the anytime search shortened each answer.
IMPROVEMENT_BUCKETS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)


class SchedulerMetrics:
    """The contract series for one track, in a registry of their own (shared with the mirror)."""

    def __init__(self, track: str, registry: CollectorRegistry | None = None) -> None:
        self.track = track
        self.registry = registry if registry is not None else CollectorRegistry()
        r, t = self.registry, ["track"]
        self._requests = Counter(
            "scheduler_requests", "Schedule RPCs by gRPC status code", [*t, "code"], registry=r
        )
        self._duration = Histogram(
            "scheduler_request_duration_seconds",
            "Schedule latency, server side",
            t,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._requested = Counter("scheduler_jobs_requested", "Jobs received", t, registry=r)
        self._scheduled = Counter(
            "scheduler_jobs_scheduled", "Jobs placed in a valid schedule", t, registry=r
        )
        self._ratio = Histogram(
            "scheduler_makespan_ratio",
            "Makespan of the answer / makespan of the legacy heuristic on the same request",
            t,
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self._batches = Counter(
            "scheduler_batches", "Batches of requests split for the policy", t, registry=r
        )
        self._fallbacks = Counter(
            "scheduler_fallback",
            "Answers produced by the heuristic because the policy could not",
            [*t, "reason"],
            registry=r,
        )
        self._greedy_cut = Counter(
            "scheduler_greedy_cut",
            "Answers whose greedy pass reached its deadline; dispatching rules placed the rest",
            t,
            registry=r,
        )
        self._improvement = Histogram(
            "scheduler_search_improvement_ratio",
            "Makespan of the answer / makespan of the greedy pass, per searched answer",
            t,
            buckets=IMPROVEMENT_BUCKETS,
            registry=r,
        )
        self._stage = Counter(
            "scheduler_search_stage",
            "Searched answers by the stage that produced the plan",
            [*t, "stage"],
            registry=r,
        )
        # The mean makespan itself (the ratio above says how it compares; the report and the
        # dashboard show both): a summary without quantiles, _sum and _count.
        self._makespan = Summary(
            "scheduler_makespan",
            "Makespan of the answers, in the requests' time unit (minutes by convention)",
            t,
            registry=r,
        )
        self._saved = Gauge(
            "scheduler_machine_time_saved",
            "Sum over answers of (legacy rule's makespan - the answer's) x machines in the request,"
            " in the requests' time unit; negative when the answers lost",
            t,
            registry=r,
        )
        self._model = Gauge(
            "scheduler_model_info", "1 for the loaded model", [*t, "version", "sha256"], registry=r
        )
        self._preset()

    def _preset(self) -> None:
        for code in PRESET_CODES:
            self._requests.labels(track=self.track, code=code.name)
        for reason in FALLBACK_REASONS:
            self._fallbacks.labels(track=self.track, reason=reason)
        for series in (
            self._duration, self._requested, self._scheduled, self._ratio, self._makespan,
            self._saved, self._greedy_cut,
        ):  # fmt: skip
            series.labels(track=self.track)
        self._batches.labels(track=self.track)

    def record_call(self, code: grpc.StatusCode, seconds: float | None = None) -> None:
        """One finished RPC; ``seconds`` None keeps it out of the latency histogram."""
        self._requests.labels(track=self.track, code=code.name).inc()
        if seconds is not None:
            self._duration.labels(track=self.track).observe(seconds)

    def record_requested(self, jobs: int) -> None:
        self._requested.labels(track=self.track).inc(jobs)

    def record_answer(
        self,
        scheduled_jobs: int,
        makespan: int,
        baseline_makespan: int,
        batches: int,
        machines: int,
    ) -> None:
        """What one answered request placed, and how it compares with the legacy rule: the
        makespan ratio, and the machine time saved (every machine is held until the makespan)."""
        self._scheduled.labels(track=self.track).inc(scheduled_jobs)
        self._saved.labels(track=self.track).inc((baseline_makespan - makespan) * machines)
        if makespan > 0:
            self._makespan.labels(track=self.track).observe(makespan)
        if baseline_makespan > 0:
            self._ratio.labels(track=self.track).observe(makespan / baseline_makespan)
        if batches > 1:
            self._batches.labels(track=self.track).inc(batches)

    def record_search(self, stage: str, makespan: int, greedy_makespan: int) -> None:
        """One answer the anytime search worked on (a budget above 0)."""
        self._stage.labels(track=self.track, stage=stage).inc()
        if greedy_makespan > 0:
            self._improvement.labels(track=self.track).observe(makespan / greedy_makespan)

    def record_greedy_cut(self) -> None:
        """One answer whose greedy pass the legacy rule finished, to be on time."""
        self._greedy_cut.labels(track=self.track).inc()

    def record_fallback(self, reason: str) -> None:
        if reason:
            self._fallbacks.labels(track=self.track, reason=reason).inc()

    def set_model(self, version: str, sha256: str) -> None:
        """Mark the loaded model (the only one: a previous model's series is removed)."""
        self._model.clear()
        self._model.labels(track=self.track, version=version, sha256=sha256).set(1)

    def exposition(self) -> bytes:
        """The text a scrape returns."""
        return generate_latest(self.registry)


@dataclass
class MetricsEndpoint:
    """The HTTP server Prometheus scrapes (``/metrics``; any path answers the same)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_endpoint(
    registry: CollectorRegistry, host: str = "0.0.0.0", port: int = 9100
) -> MetricsEndpoint:
    """Serve ``registry`` over HTTP on a daemon thread; ``port=0`` picks a free port."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread)
