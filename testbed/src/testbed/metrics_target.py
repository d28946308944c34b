"""A scrape target whose series a test writes: counters that grow at chosen rates, gauges.

Prometheus scrapes it like any exporter, so queries run against real scraped samples, but the
test decides the numbers: ``set_rate`` makes a counter grow by so much per second from now on
(continuing from its current value, as a real counter would), ``set_gauge`` sets a gauge,
``set_histogram`` makes a histogram observe one value at a steady rate. ``contract_traffic``
writes the scheduler's metric contract (shared DESIGN.md) for one track in one go, so a test can
say "the canary completes 80% of jobs at 0.2 s" without running a scheduler.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Labels = tuple[tuple[str, str], ...]

# The scheduler's buckets that matter here: enough for a p95 to fall in the right interval.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
RATIO_BUCKETS = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5, 2.0)
CODES = ("OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "UNAVAILABLE", "INTERNAL")


@dataclass
class _Counter:
    base: float
    per_second: float
    since: float

    def at(self, now: float) -> float:
        return self.base + self.per_second * (now - self.since)


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, labels: Labels, value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    text = "NaN" if math.isnan(value) else repr(value) if math.isfinite(value) else f"{value:+}"
    return f"{name}{{{inner}}} {text}\n"


class MetricsTarget:
    """An HTTP endpoint on 127.0.0.1 answering every path with the series the test set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], _Counter] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """``host:port`` for a ScrapeJob."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> MetricsTarget:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def set_rate(
        self, name: str, labels: Mapping[str, str], per_second: float, *, at: float | None = None
    ) -> None:
        """From now (or ``at``) on, the counter ``name{labels}`` grows by ``per_second`` each
        second. Series changed together pass one ``at`` so that they stay in step (histogram
        buckets must never decrease from one bound to the next)."""
        key, now = (name, _key(labels)), time.time() if at is None else at
        with self._lock:
            current = self._counters.get(key)
            base = current.at(now) if current else 0.0
            self._counters[key] = _Counter(base, per_second, now)

    def set_gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        with self._lock:
            self._gauges[name, _key(labels)] = value

    def set_histogram(
        self,
        name: str,
        labels: Mapping[str, str],
        observed: float,
        per_second: float,
        buckets: Iterable[float],
        *,
        at: float | None = None,
    ) -> None:
        """``name`` observes ``observed`` ``per_second`` times a second (``_bucket``, ``_sum``,
        ``_count`` series, cumulative buckets with ``+Inf``)."""
        at = time.time() if at is None else at
        for le in (*buckets, math.inf):
            rate = per_second if observed <= le else 0.0
            self.set_rate(f"{name}_bucket", {**labels, "le": _le(le)}, rate, at=at)
        self.set_rate(f"{name}_sum", labels, per_second * observed, at=at)
        self.set_rate(f"{name}_count", labels, per_second, at=at)

    def exposition(self) -> str:
        now = time.time()
        with self._lock:
            counters = [(k, c.at(now)) for k, c in self._counters.items()]
            gauges = list(self._gauges.items())
        return "".join(_sample(name, labels, v) for (name, labels), v in [*counters, *gauges])


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def contract_traffic(
    target: MetricsTarget,
    labels: Mapping[str, str],
    *,
    requests_per_s: float = 10.0,
    jobs_per_request: float = 5.0,
    completion: float = 1.0,
    error_rate: float = 0.0,
    latency_s: float = 0.2,
    makespan_ratio: float = 1.0,
) -> None:
    """The scheduler's contract series for ``labels`` (``track`` and usually ``namespace``)
    at steady rates: every code series exists (as the scheduler presets them), errors are split
    evenly over ``INTERNAL``, latency and makespan ratio observed once per answered request."""
    now, errors = time.time(), requests_per_s * error_rate
    for code in CODES:
        rate = requests_per_s - errors if code == "OK" else errors if code == "INTERNAL" else 0.0
        target.set_rate("scheduler_requests_total", {**labels, "code": code}, rate, at=now)
    requested = requests_per_s * jobs_per_request
    target.set_rate("scheduler_jobs_requested_total", labels, requested, at=now)
    target.set_rate("scheduler_jobs_scheduled_total", labels, requested * completion, at=now)
    for name, observed, buckets in (
        ("scheduler_request_duration_seconds", latency_s, DURATION_BUCKETS),
        ("scheduler_makespan_ratio", makespan_ratio, RATIO_BUCKETS),
    ):
        target.set_histogram(name, labels, observed, requests_per_s, buckets, at=now)
