"""``schedctl ingest --metrics-file``: the file Prometheus reads for the chart's
``SchedulerDatabaseConnectionFailing`` alert, written by real runs against the real MariaDB.

An unreachable server counts an error and reports the database down, run after run; a good run
reports it up, keeps the error count and stamps the success; bad data reaches the database but
is no success.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobshop_scheduler.cli import main
from jobshop_scheduler.data.ingest_metrics import (
    DB_ERRORS,
    DB_UP,
    LAST_RUN,
    LAST_SUCCESS,
    previous_values,
    record_run,
)
from testbed.mariadb import Credentials
from testbed.process import free_port

from .conftest import SeededDatabase, use_database

pytestmark = pytest.mark.mariadb


def test_runs_leave_their_outcome_for_prometheus(
    seeded: SeededDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = tmp_path / "textfile" / "scheduler_ingest.prom"
    nobody = Credentials("127.0.0.1", free_port(), "jobshop", "x", "jobshop")
    use_database(monkeypatch, tmp_path, nobody, "x")
    for run in (1, 2):
        assert main(["ingest", "--metrics-file", str(metrics)]) == 3  # cannot reach the server
        values = previous_values(metrics)
        assert (values[DB_UP], values[DB_ERRORS]) == (0.0, float(run))
        assert LAST_SUCCESS not in values

    c = seeded.credentials
    use_database(monkeypatch, tmp_path, c, c.password)
    assert main(["ingest", "--metrics-file", str(metrics)]) == 0
    values = previous_values(metrics)
    assert (values[DB_UP], values[DB_ERRORS]) == (1.0, 2.0)  # the count survives the recovery
    assert values[LAST_SUCCESS] == values[LAST_RUN] > 0
    text = metrics.read_text()
    assert "# TYPE scheduler_ingest_db_errors_total counter" in text
    assert "# TYPE scheduler_ingest_db_up gauge" in text

    assert main(["ingest", "--metrics-file", str(metrics), "--expect-jobs", "1"]) == 1
    after = previous_values(metrics)
    assert (after[DB_UP], after[DB_ERRORS]) == (1.0, 2.0)  # read the database, wrote nothing
    assert after[LAST_SUCCESS] == values[LAST_SUCCESS] <= after[LAST_RUN]


@pytest.mark.unit
def test_an_unreadable_previous_file_starts_the_count_again(tmp_path: Path) -> None:
    metrics = tmp_path / "scheduler_ingest.prom"
    metrics.write_text("not the text format {{{\n")
    record_run(metrics, db_ok=False, wrote=False, now=100.0)
    assert previous_values(metrics) == {DB_UP: 0.0, DB_ERRORS: 1.0, LAST_RUN: 100.0}
