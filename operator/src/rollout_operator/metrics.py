"""The operator's own Prometheus metrics, on a registry and HTTP port of their own.

What a dashboard or an alert on the operator needs, each series labelled ``rollout`` and
``namespace``:

- ``rollout_operator_phase{phase}``: 1 for the rollout's current phase, 0 for every other phase
  (kube-state-metrics style: ``sum by (phase) (rollout_operator_phase)`` counts rollouts by phase);
- ``rollout_operator_weight``: percent of real traffic the candidate serves;
- ``rollout_operator_analysis_value{metric,kind}``: the last measured value (NaN when the last
  round had no data), ``kind`` = ``rollback``, ``warn`` or ``shadowCompare`` because the same
  metric usually has a rollback and a warning threshold;
- ``rollout_operator_analysis_threshold{metric,kind}``: the threshold it was judged against;
- ``rollout_operator_analysis_verdict{metric,kind,verdict}``: 1 for the last verdict (``pass``,
  ``breach`` or ``noData``), 0 for the other two; the verdict is a label, not a coded number, so
  alerts read ``rollout_operator_analysis_verdict{verdict="breach"} == 1``;
- ``rollout_operator_last_analysis_timestamp_seconds``: when the last round ran;
- ``rollout_operator_rollbacks_total{metric}``: rollbacks by reason, ``metric`` naming the rule
  that triggered it (or e.g. ``noData``/``abort`` for rollbacks not caused by a rule);
- ``rollout_operator_analysis_no_data_total{metric,kind}``: measurements that had no data.

The registry is the object's own (not the process-wide default), so two operators in one
process never share series; ``forget`` drops a deleted rollout's series.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from rollout_operator.model import AnalysisReport, MetricResult, Phase, Verdict

_ROLLOUT = ("rollout", "namespace")
_METRIC = (*_ROLLOUT, "metric", "kind")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.phase = Gauge(
            "rollout_operator_phase", "1 for the rollout's phase", [*_ROLLOUT, "phase"], registry=r
        )
        self.weight = Gauge(
            "rollout_operator_weight",
            "Percent of traffic the candidate serves",
            _ROLLOUT,
            registry=r,
        )
        self.value = Gauge(
            "rollout_operator_analysis_value",
            "Last measured value (NaN: no data)",
            _METRIC,
            registry=r,
        )
        self.threshold = Gauge(
            "rollout_operator_analysis_threshold",
            "Threshold the value is judged against",
            _METRIC,
            registry=r,
        )
        self.verdict = Gauge(
            "rollout_operator_analysis_verdict",
            "1 for the last verdict",
            [*_METRIC, "verdict"],
            registry=r,
        )
        self.last_analysis = Gauge(
            "rollout_operator_last_analysis_timestamp_seconds",
            "When the last analysis ran",
            _ROLLOUT,
            registry=r,
        )
        self.rollbacks = Counter(
            "rollout_operator_rollbacks",
            "Rollbacks by the metric that caused them",
            [*_ROLLOUT, "metric"],
            registry=r,
        )
        self.no_data = Counter(
            "rollout_operator_analysis_no_data",
            "Measurements that had no data",
            _METRIC,
            registry=r,
        )
        # Every label set written per rollout, so that ``forget`` can remove exactly those.
        self._written: dict[tuple[str, str], set[tuple[Gauge | Counter, tuple[str, ...]]]] = (
            defaultdict(set)
        )
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- recording ------------------------------------------------------------------------

    def record_state(self, rollout: str, namespace: str, phase: Phase, weight: int) -> None:
        """The rollout's phase and weight after a status write (or on resume)."""
        with self._lock:
            for each in Phase:
                self._set(self.phase, (rollout, namespace, each.value), float(each is phase))
            self._set(self.weight, (rollout, namespace), float(weight))

    def record_analysis(self, rollout: str, namespace: str, report: AnalysisReport) -> None:
        """Every value, threshold and verdict of one analysis round."""
        kinds = (
            *(("rollback", r) for r in report.rollback),
            *(("warn", r) for r in report.warn),
            *((("shadowCompare", report.shadow_compare),) if report.shadow_compare else ()),
        )
        with self._lock:
            for kind, result in kinds:
                self._record_result(rollout, namespace, kind, result)
            self._set(self.last_analysis, (rollout, namespace), report.time)

    def record_rollback(self, rollout: str, namespace: str, metric: str) -> None:
        with self._lock:
            self._inc(self.rollbacks, (rollout, namespace, metric))

    def forget(self, rollout: str, namespace: str) -> None:
        """Drop every series of a deleted rollout."""
        with self._lock:
            for metric, labels in self._written.pop((rollout, namespace), set()):
                metric.remove(*labels)

    def _record_result(self, rollout: str, namespace: str, kind: str, result: MetricResult) -> None:
        labels = (rollout, namespace, result.name, kind)
        value = math.nan if result.value is None else result.value
        self._set(self.value, labels, value)
        self._set(self.threshold, labels, result.threshold)
        for verdict in Verdict:
            self._set(self.verdict, (*labels, verdict.value), float(verdict is result.verdict))
        if result.verdict is Verdict.NO_DATA:
            self._inc(self.no_data, labels)

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        gauge.labels(*labels).set(value)
        self._written[labels[0], labels[1]].add((gauge, labels))

    def _inc(self, counter: Counter, labels: tuple[str, ...]) -> None:
        counter.labels(*labels).inc()
        self._written[labels[0], labels[1]].add((counter, labels))

    # --- serving --------------------------------------------------------------------------

    def serve(self, port: int = 0, host: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on a daemon thread; returns the bound port (``port=0`` picks one)."""
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already serving")
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
