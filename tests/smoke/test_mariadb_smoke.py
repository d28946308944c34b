"""The real MariaDB server: a table written and read back with aiomysql (the ingestion driver)."""

from __future__ import annotations

import aiomysql
import pymysql
import pytest

from testbed.mariadb import MariaDBServer

pytestmark = [pytest.mark.smoke, pytest.mark.mariadb]


async def test_table_written_and_read_back(mariadb: MariaDBServer) -> None:
    c = mariadb.credentials
    conn = await aiomysql.connect(
        host=c.host, port=c.port, user=c.user, password=c.password, db=c.database, autocommit=False
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "CREATE TABLE smoke_jobs (id VARCHAR(32) PRIMARY KEY, ops INT NOT NULL)"
            )
            await cur.executemany(
                "INSERT INTO smoke_jobs VALUES (%s, %s)", [("J1", 3), ("J2", 5), ("J3", 1)]
            )
        await conn.commit()
        async with conn.cursor() as cur:
            await cur.execute("SELECT id, ops FROM smoke_jobs ORDER BY id")
            rows = await cur.fetchall()
        assert rows == (("J1", 3), ("J2", 5), ("J3", 1))
    finally:
        conn.close()


async def test_wrong_password_is_refused(mariadb: MariaDBServer) -> None:
    c = mariadb.credentials
    with pytest.raises(pymysql.err.OperationalError) as err:
        await aiomysql.connect(
            host=c.host, port=c.port, user=c.user, password="not-the-password", db=c.database
        )
    assert err.value.args[0] == 1045  # ER_ACCESS_DENIED_ERROR
