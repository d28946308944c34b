"""What a metrics provider promises: one number per query, or a reason why there is none.

Providers measure and never judge (shared STYLE.md, "providers measure, one evaluator judges"):
an empty result, NaN, several series or an unreachable server all come back as ``NoData`` with a
reason, never as an exception and never as a number the evaluator could mistake for a pass or a
breach. ``runner.analyse`` takes any object with this method, so another source of numbers can
stand in for Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class NoData:
    """No usable number. ``bad_query`` marks a query Prometheus rejected as malformed (HTTP 400):
    a spec error rather than an outage, which the spec check may turn into phase ``Invalid``."""

    reason: str
    bad_query: bool = False


class MetricsProvider(Protocol):
    def query(self, promql: str) -> float | NoData:
        """The query's single value now; ``NoData`` (never an exception) when there is none."""
        ...
