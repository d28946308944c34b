"""Driver failures become DatabaseErrors that name server and step, with the password scrubbed."""

from __future__ import annotations

import pymysql
import pytest

from jobshop_scheduler.data.database import describe_failure
from jobshop_scheduler.data.secret import Secret
from jobshop_scheduler.data.settings import Settings

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_settings")]

PASSWORD = "hunter2-but-longer"
SETTINGS = Settings(db_host="db.plant", db_password=Secret(PASSWORD))


@pytest.mark.parametrize(
    ("exc", "during", "expected"),
    [
        (
            pymysql.err.OperationalError(1045, f"Access denied (password '{PASSWORD}')"),
            "connecting",
            "MariaDB jobshop@db.plant:3306/jobshop: connecting: access denied: check "
            "SCHEDULER_DB_USER and the password (SCHEDULER_DB_PASSWORD_FILE) "
            "(1045: Access denied (password '********'))",
        ),
        (
            pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
            "reading jobs",
            "reading jobs: lost the connection to the server (2013: Lost connection",
        ),
        (ConnectionRefusedError(111, "refused"), "connecting", "cannot reach the server"),
        (EOFError("0 bytes read"), "reading operations", "lost the connection to the server"),
        (TimeoutError(), "connecting", "reach the server: check SCHEDULER_DB_HOST / "
         "SCHEDULER_DB_PORT, is it running? (no answer within 10 s)"),
        (pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
         "reading machines", "SQL syntax error in the query (SCHEDULER_DB_QUERY_*)"),
    ],
)  # fmt: skip
def test_failures_are_named_and_scrubbed(exc: BaseException, during: str, expected: str) -> None:
    error = describe_failure(exc, SETTINGS, during)
    assert expected in str(error)
    assert PASSWORD not in str(error)
    assert error.__cause__ is None
