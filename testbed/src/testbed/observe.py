"""What a platform team watches during a rollout, sampled into rows: the rollout's status, the
route as the gateway applies it, and per track the metrics the operator judges by.

The per-track numbers come from Prometheus through the operator's own built-in queries, over a
short range (``RANGE``) so that a change shows within seconds; the operator itself judges over
its analysis window. ``makespan vs legacy`` is the mean of ``scheduler_makespan_ratio``: below
1.00 the track's schedules are shorter than the legacy rule's on the same requests.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from rollout_operator.analysis.queries import MEAN_MAKESPAN_RATIO, render
from rollout_operator.model import Comparison, Rule
from testbed.prometheus import PrometheusServer

RANGE = "15s"
QUERIES = {
    "completion": Rule("completion-rate", "", Comparison.BELOW, 0.0),
    "p95_s": Rule("latency-p95-seconds", "", Comparison.ABOVE, 0.0),
    "makespan_ratio": Rule("makespan-ratio", MEAN_MAKESPAN_RATIO, Comparison.ABOVE, 0.0),
}
TRACKS = ("stable", "shadow", "canary")


@dataclass(frozen=True)
class TrackSample:
    completion: float | None
    p95_s: float | None
    makespan_ratio: float | None


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the demo started
    rollout: str
    phase: str
    step: str  # "3/6"
    weight: int  # the candidate's share in the route, as the gateway applies it
    mirror: int
    tracks: dict[str, TrackSample] = field(default_factory=dict)


def track_sample(prometheus: PrometheusServer, namespace: str, track: str) -> TrackSample:
    values: dict[str, float | None] = {}
    for key, rule in QUERIES.items():
        try:
            result = prometheus.query(render(rule, track, namespace, "", 0, range_=RANGE))
        except (OSError, RuntimeError):  # Prometheus away: no number, not a crash
            result = []
        value = float(result[0]["value"][1]) if result else math.nan
        values[key] = None if math.isnan(value) else value
    return TrackSample(**values)


def sample(
    started: float,
    prometheus: PrometheusServer,
    namespace: str,
    rollout: str,
    status: dict[str, Any],
    *,
    weight: int,
    mirror: int,
    steps: int,
) -> Sample:
    tracks = {t: track_sample(prometheus, namespace, t) for t in TRACKS}
    step = status.get("step")
    return Sample(
        round(time.monotonic() - started, 1),
        rollout,
        status.get("phase") or "-",
        f"{step + 1}/{steps}" if isinstance(step, int) else "-",
        weight,
        mirror,
        tracks,
    )


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def candidate_track(row: Sample) -> str:
    """The candidate's track worth showing: shadow while mirrored, canary otherwise."""
    shadow = row.tracks.get("shadow")
    if row.phase == "Shadow" or (row.weight == 0 and shadow and shadow.p95_s is not None):
        return "shadow"
    return "canary"


HEADER = (
    f"{'t(s)':>6}  {'phase':<17} {'step':>4} {'weight':>6} {'mirror':>6}  "
    f"{'stable: done':>12} {'p95 ms':>7} {'vs legacy':>9}  "
    f"{'candidate: done':>15} {'p95 ms':>7} {'vs legacy':>9}"
)


def format_row(row: Sample) -> str:
    stable = row.tracks.get("stable") or TrackSample(None, None, None)
    cand = row.tracks.get(candidate_track(row)) or TrackSample(None, None, None)
    ms = 1000.0
    return (
        f"{row.t:>6.1f}  {row.phase:<17} {row.step:>4} {row.weight:>5}% {row.mirror:>5}%  "
        f"{_num(stable.completion, '.3f'):>12} "
        f"{_num(None if stable.p95_s is None else stable.p95_s * ms, '.0f'):>7} "
        f"{_num(stable.makespan_ratio, '.3f'):>9}  "
        f"{_num(cand.completion, '.3f'):>15} "
        f"{_num(None if cand.p95_s is None else cand.p95_s * ms, '.0f'):>7} "
        f"{_num(cand.makespan_ratio, '.3f'):>9}"
    )
