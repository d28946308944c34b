"""What ``schedctl ingest --metrics-file FILE`` leaves for Prometheus: could the last run use the
production database?

Ingestion is a batch job (cron, a Kubernetes CronJob) that is gone before any scrape, so each run
writes its outcome in the Prometheus text format to a file that node_exporter's textfile
collector (or any sidecar that serves the file) exposes; the chart's
``SchedulerDatabaseConnectionFailing`` alert reads it. The file is replaced atomically
(``prometheus_client.write_to_textfile``), and the error counter and the last success time are
carried over from the previous file, so they survive from run to run:

- ``scheduler_ingest_db_up``: 1 when the last run read the database, 0 when it could not
  (unreachable, refused, lost the connection mid-read);
- ``scheduler_ingest_db_errors_total``: runs that failed on the database;
- ``scheduler_ingest_last_run_timestamp_seconds`` and
  ``scheduler_ingest_last_success_timestamp_seconds`` (a success: the run wrote a snapshot).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

DB_UP = "scheduler_ingest_db_up"
DB_ERRORS = "scheduler_ingest_db_errors_total"
LAST_RUN = "scheduler_ingest_last_run_timestamp_seconds"
LAST_SUCCESS = "scheduler_ingest_last_success_timestamp_seconds"


def previous_values(path: Path) -> dict[str, float]:
    """The samples of an earlier file by name; none when it is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (OSError, ValueError):
        return {}
    return {s.name: s.value for family in families for s in family.samples}


class _RunOutcome(Collector):
    def __init__(self, values: dict[str, float]) -> None:
        self.values = values

    def collect(self) -> Iterator[Metric]:
        v = self.values
        yield GaugeMetricFamily(DB_UP, "1 when the last ingest read the database", v[DB_UP])
        yield CounterMetricFamily(
            DB_ERRORS.removesuffix("_total"), "ingest runs that failed on the database",
            v[DB_ERRORS],
        )  # fmt: skip
        yield GaugeMetricFamily(LAST_RUN, "when the last ingest ran", v[LAST_RUN])
        if LAST_SUCCESS in v:
            yield GaugeMetricFamily(
                LAST_SUCCESS, "when an ingest last wrote a snapshot", v[LAST_SUCCESS]
            )


def record_run(path: Path, *, db_ok: bool, wrote: bool, now: float | None = None) -> None:
    """Write the outcome of one run to ``path`` (atomically), counting on from the last file."""
    stamp = time.time() if now is None else now
    before = previous_values(path)
    values = {
        DB_UP: 1.0 if db_ok else 0.0,
        DB_ERRORS: before.get(DB_ERRORS, 0.0) + (0.0 if db_ok else 1.0),
        LAST_RUN: stamp,
    }
    if wrote:
        values[LAST_SUCCESS] = stamp
    elif LAST_SUCCESS in before:
        values[LAST_SUCCESS] = before[LAST_SUCCESS]
    registry = CollectorRegistry()
    registry.register(_RunOutcome(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
