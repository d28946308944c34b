"""MariaDB access with aiomysql: one consistent, streamed read of the four ingestion queries.

The four SELECTs run inside ``START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT``, so jobs,
operations and alternatives come from one moment even while the plant keeps writing. Rows are
streamed (an unbuffered server-side cursor, ``fetchmany``) so a large table is never held twice.

Every driver failure becomes a ``DatabaseError`` whose message names the server, the step
(connecting, reading operations, ...) and a hint, with the password scrubbed from the driver's
text; it is raised ``from None`` so no traceback carries the original message either.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiomysql
import pymysql
from tqdm import tqdm

from jobshop_scheduler.data.assemble import Row, Tables
from jobshop_scheduler.data.settings import Settings

DRIVER_ERRORS = (pymysql.err.Error, OSError, EOFError)  # TimeoutError is an OSError

_HINTS = {
    1044: "access to the database denied: grant the user SELECT on it",
    1045: "access denied: check SCHEDULER_DB_USER and the password (SCHEDULER_DB_PASSWORD_FILE)",
    1049: "no such database: check SCHEDULER_DB_NAME",
    1064: "SQL syntax error in the query (SCHEDULER_DB_QUERY_*)",
    1146: "a table the query reads does not exist (schema: examples/db/schema.sql)",
    2003: "cannot reach the server: check SCHEDULER_DB_HOST / SCHEDULER_DB_PORT, is it running?",
    2006: "the server went away",
    2013: "lost the connection to the server",
}


class DatabaseError(RuntimeError):
    """The database refused, was unreachable or went away; never carries the password."""


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...
    def close(self) -> None: ...


ProgressFactory = Callable[[str], Progress]


def tqdm_progress(enabled: bool | None = None) -> ProgressFactory:
    """Bars on stderr, one per query; ``None``: only when stderr is a terminal."""

    def start(name: str) -> Progress:
        return tqdm(
            desc=f"reading {name}", unit=" rows", file=sys.stderr, disable=_disabled(enabled),
            mininterval=0.5, leave=False,
        )  # fmt: skip

    return start


def _disabled(enabled: bool | None) -> bool | None:
    return None if enabled is None else not enabled  # tqdm: None disables on a non-tty


def describe_failure(exc: BaseException, settings: Settings, during: str) -> DatabaseError:
    """A scrubbed, hinted DatabaseError for a driver exception."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    detail = exc.args[1] if code is not None and len(exc.args) > 1 else str(exc)
    detail = settings.db_password.scrub(str(detail) or exc.__class__.__name__)
    if isinstance(exc, TimeoutError):
        detail = f"no answer within {settings.db_connect_timeout_s:g} s"
    hint = _HINTS.get(code or 0, "")
    if not hint and isinstance(exc, EOFError | OSError):
        hint = _HINTS[2003] if during == "connecting" else _HINTS[2013]
    cause = f"{code}: {detail}" if code else detail
    reason = f"{hint} ({cause})" if hint else cause
    return DatabaseError(f"MariaDB {settings.db_address}: {during}: {reason}")


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Any]:
    """An aiomysql connection (autocommit off), closed on exit; DatabaseError if refused."""
    try:
        conn = await asyncio.wait_for(
            aiomysql.connect(
                host=settings.db_host, port=settings.db_port, user=settings.db_user,
                password=settings.db_password.reveal(), db=settings.db_name, charset="utf8mb4",
                connect_timeout=settings.db_connect_timeout_s, autocommit=False,
            ),
            timeout=settings.db_connect_timeout_s + 1,
        )  # fmt: skip
    except DRIVER_ERRORS as exc:
        raise describe_failure(exc, settings, "connecting") from None
    try:
        yield conn
    finally:
        conn.close()


async def _stream(
    conn: Any, sql: str, name: str, fetch_size: int, progress: ProgressFactory
) -> list[Row]:
    rows: list[Row] = []
    bar = progress(name)
    try:
        # Not ``async with``: closing an unbuffered cursor drains the rest of the result, and on
        # a connection that just died aiomysql then fails with an AttributeError that would
        # hide the real error. A failed read leaves the cursor to ``conn.close()``.
        cur = await conn.cursor(aiomysql.SSCursor)
        await cur.execute(sql)
        while batch := await cur.fetchmany(fetch_size):
            rows.extend(batch)
            bar.update(len(batch))
        await cur.close()
    finally:
        bar.close()
    return rows


async def read_tables(settings: Settings, progress: ProgressFactory | None = None) -> Tables:
    """The rows of the four queries, read in one consistent snapshot of the database."""
    start = progress or tqdm_progress()
    tables = Tables()
    async with connect(settings) as conn:
        during = "starting a consistent read"
        try:
            async with conn.cursor() as cur:
                await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await cur.execute("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT")
            for name, sql in settings.queries.tables():
                during = f"reading {name}"
                rows = await _stream(conn, sql, name, settings.db_fetch_size, start)
                getattr(tables, name).extend(rows)
            during = "ending the read"
            await conn.rollback()  # read only: also proves the server was there to the end
        except DRIVER_ERRORS as exc:
            raise describe_failure(exc, settings, during) from None
    return tables


async def _scalar(settings: Settings, sql: str, during: str) -> object:
    async with connect(settings) as conn:
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql)
                rows = await cur.fetchall()
        except DRIVER_ERRORS as exc:
            raise describe_failure(exc, settings, during) from None
    if len(rows) != 1 or len(rows[0]) != 1:
        raise DatabaseError(f"MariaDB {settings.db_address}: {during}: expected one value")
    value: object = rows[0][0]
    return value


async def count_jobs(settings: Settings) -> int:
    """The job count the database reports now (``SCHEDULER_DB_QUERY_JOB_COUNT``)."""
    value = await _scalar(settings, settings.query_job_count, "counting jobs")
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatabaseError(
            f"MariaDB {settings.db_address}: the job count query returned {value!r}"
        )
    return value


async def server_version(settings: Settings) -> str:
    """``SELECT VERSION()``: reachability with the configured credentials."""
    return str(await _scalar(settings, "SELECT VERSION()", "asking the server version"))
