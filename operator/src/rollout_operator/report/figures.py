"""What the report measures, per track and per step, and the Prometheus calls that measure it.

The PromQL is the analysis' own (``analysis.queries``: completion rate, error rate, p95 latency,
mean makespan ratio) with the step's whole span as the ``{{window}}``, evaluated at the step's
end: a ratio of two ``rate()`` over one window equals the ratio of the two counters' increases,
so each number is the step's own, not a moving average. The three figures the analysis does not
judge (jobs per hour, mean makespan, batch events, machine time saved) follow the same placeholders.

Like the analysis provider, nothing here raises on a Prometheus problem: an unreachable server,
an error answer, an empty vector or a 0/0 becomes ``NoData`` with its reason, which the Markdown
shows as "no data".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from rollout_operator.analysis import queries
from rollout_operator.analysis.prometheus import read_result
from rollout_operator.analysis.provider import NoData
from rollout_operator.model import Comparison, Rule
from rollout_operator.report.timeline import Segment

TRACKS = ("stable", "canary", "shadow")
TIMEOUT_S = 10.0
# The contract's unit for makespans is the request's time unit: minutes by the plants' convention.
MINUTES_PER_HOUR = 60.0

JOBS_PER_HOUR = """
3600 * sum(rate(
  scheduler_jobs_scheduled_total{track="{{track}}", namespace="{{namespace}}"}[{{window}}]
))"""
MEAN_MAKESPAN = """
sum(rate(scheduler_makespan_sum{track="{{track}}", namespace="{{namespace}}"}[{{window}}]))
/
sum(rate(scheduler_makespan_count{track="{{track}}", namespace="{{namespace}}"}[{{window}}]))"""
BATCH_EVENTS = """
sum(increase(scheduler_batches_total{track="{{track}}", namespace="{{namespace}}"}[{{window}}]))"""
# A gauge, not a counter, despite its name: the running sum goes down when answers lose to the
# legacy rule, so delta(), which reads a decrease as a decrease, not increase().
TIME_SAVED = """
sum(delta(
  scheduler_machine_time_saved{track="{{track}}", namespace="{{namespace}}"}[{{window}}]
))"""


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    query: str
    fmt: str  # format spec of the value in the Markdown


FIGURES = (
    Figure("jobs-per-hour", "jobs scheduled / h", JOBS_PER_HOUR, ",.0f"),
    Figure("makespan", "mean makespan", MEAN_MAKESPAN, ",.0f"),
    Figure("makespan-ratio", "mean makespan ratio to legacy", queries.MEAN_MAKESPAN_RATIO, ".3f"),
    Figure("completion-rate", "completion rate", queries.COMPLETION_RATE, ".2%"),
    Figure("latency-p95-seconds", "p95 latency (s)", queries.LATENCY_P95, ".3f"),
    Figure("batch-events", "batch events", BATCH_EVENTS, ",.0f"),
    Figure("error-rate", "error rate", queries.ERROR_RATE, ".2%"),
    Figure("machine-time-saved", "machine time saved (min)", TIME_SAVED, ",.1f"),
)
# What the PNG plots over time (a rate over a sliding window, not the step's total).
PLOTTED = ("jobs-per-hour", "makespan-ratio", "latency-p95-seconds", "error-rate")
BY_NAME = {f.name: f for f in FIGURES}

Value = float | NoData
Series = list[tuple[float, float]]


def promql(figure: Figure, track: str, namespace: str, window_s: float) -> str:
    """The figure's query for one track, over ``window_s`` rounded to whole seconds (>= 1)."""
    rule = Rule(figure.name, figure.query.strip(), Comparison.ABOVE, 0.0)
    window = f"{max(1, round(window_s))}s"
    return queries.render(rule, track, namespace, "", 0.0, range_=window)


@dataclass
class Measurements:
    """Per segment (``None``: the whole life) and track, each figure's value."""

    values: dict[tuple[int | None, str], dict[str, Value]] = field(default_factory=dict)
    series: dict[str, dict[str, Series | NoData]] = field(default_factory=dict)

    def value(self, segment: int | None, track: str, figure: str) -> Value:
        return self.values.get((segment, track), {}).get(figure, NoData("not measured"))


class PrometheusSource:
    """Instant queries at a chosen time and range queries, against one Prometheus server."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._down: NoData | None = None
        self._session = requests.Session()
        self._client = PrometheusConnect(
            url=self.url,
            retry=Retry(total=0, raise_on_status=False),
            session=self._session,
            timeout=cast(int, timeout_s),  # handed to requests, which takes fractions too
        )

    def at(self, query: str, when: float) -> Value:
        result = self._call(lambda: self._client.custom_query(query, params={"time": when}))
        return result if isinstance(result, NoData) else read_result(result)

    def over(self, query: str, start: float, end: float, step_s: float) -> Series | NoData:
        """The query's one series between ``start`` and ``end``; NaN and ±Inf points dropped."""
        result = self._call(
            lambda: self._client.custom_query_range(
                query, _utc(start), _utc(end), f"{max(1, math.ceil(step_s))}s"
            )
        )
        if isinstance(result, NoData):
            return result
        if not isinstance(result, list) or len(result) != 1:
            return NoData(f"range query returned {len(result or [])} series, expected 1")
        points = [(float(t), float(v)) for t, v in result[0].get("values", [])]
        return [(t, v) for t, v in points if math.isfinite(v)] or NoData("no finite points")

    def _call(self, call: Any) -> Any:
        """``call()``'s result, or NoData. After one failed connection every later call fails
        at once with the same reason: a report against a down server must not wait out a
        timeout for each of its hundreds of queries."""
        if self._down is not None:
            return self._down
        try:
            return call()
        except PrometheusApiClientException as exc:
            return NoData(f"Prometheus refused the query: {str(exc)[:200]}")
        except (requests.Timeout, requests.ConnectionError) as exc:
            self._down = NoData(f"Prometheus at {self.url} unreachable ({type(exc).__name__})")
            return self._down
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            return NoData(f"unreadable answer from Prometheus at {self.url}: {exc!s:.200}")

    def close(self) -> None:
        self._session.close()


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def measure(
    source: PrometheusSource,
    namespace: str,
    segments: Sequence[Segment],
    life: tuple[float, float],
    *,
    step_s: float | None = None,
) -> Measurements:
    """Every figure per track over the whole life and over each segment, and the plotted
    figures as series over the life (``step_s`` apart; default: about 240 points)."""
    found = Measurements()
    spans: list[tuple[int | None, float, float]] = [(None, *life)]
    spans += [(i, s.start, s.end) for i, s in enumerate(segments)]
    for index, start, end in spans:
        for track in TRACKS:
            found.values[index, track] = {
                f.name: _measure_span(source, f, track, namespace, (start, end)) for f in FIGURES
            }
    start, end = life
    step = step_s or max(1.0, (end - start) / 240)
    # 60 s holds two scrapes at the usual intervals; a life shorter than 4 min gets a shorter
    # window, else its whole plot would be one ramp.
    window = max(4 * step, min(60.0, (end - start) / 4), 1.0)
    for name in PLOTTED:
        found.series[name] = {
            track: source.over(promql(BY_NAME[name], track, namespace, window), start, end, step)
            for track in TRACKS
        }
    return found


def _measure_span(
    source: PrometheusSource, figure: Figure, track: str, namespace: str, span: tuple[float, float]
) -> Value:
    start, end = span
    if end - start < 1.0:
        return NoData("the step lasted under a second")
    return source.at(promql(figure, track, namespace, end - start), end)
