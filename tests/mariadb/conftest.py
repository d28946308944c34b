"""A fresh database per test module on the session's real MariaDB, seeded like production.

The schema is the shipped DDL (examples/db/schema.sql) and the rows come from the project's
seeder, so these tests exercise exactly what an operator runs. Tests that stop or kill a
server get a private instance in their own folder; the shared one is never touched.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from jobshop_scheduler.data.secret import Secret
from jobshop_scheduler.data.seed import seed
from jobshop_scheduler.data.settings import Settings
from jobshop_scheduler.instances.flexible import production_like
from testbed import MissingBinaryError
from testbed.mariadb import Credentials, MariaDBServer

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "examples" / "db" / "schema.sql"
SEEDED_JOBS = 520


@dataclass(frozen=True)
class SeededDatabase:
    server: MariaDBServer
    credentials: Credentials  # database: this module's own

    def settings(self, **changes: Any) -> Settings:
        c = self.credentials
        base = Settings(
            db_host=c.host, db_port=c.port, db_user=c.user, db_name=c.database,
            db_password=Secret(c.password), configured=frozenset({"SCHEDULER_DB_HOST"}),
        )  # fmt: skip
        return replace(base, **changes)

    def execute(self, *statements: str) -> None:
        """Run statements as root in this module's database (test set-up and faults)."""
        conn = self.server.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(f"USE `{self.credentials.database}`")
                for statement in statements:
                    cur.execute(statement)
            conn.commit()
        finally:
            conn.close()


def fresh_database(server: MariaDBServer, name: str) -> Credentials:
    c = server.credentials
    conn = server.root_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"GRANT ALL ON `{name}`.* TO %s@'{host}'", (c.user,))
        conn.commit()
    finally:
        conn.close()
    return Credentials(c.host, c.port, c.user, c.password, name)


def seed_database(server: MariaDBServer, credentials: Credentials, jobs: int) -> SeededDatabase:
    db = SeededDatabase(server, credentials)
    problem = production_like(jobs, seed=11)
    asyncio.run(seed(db.settings(), problem, SCHEMA.read_text(encoding="utf-8")))
    return db


@pytest.fixture(scope="module")
def seeded(mariadb: MariaDBServer) -> SeededDatabase:
    name = f"ingest_{secrets.token_hex(4)}"
    return seed_database(mariadb, fresh_database(mariadb, name), SEEDED_JOBS)


@pytest.fixture()
def private_mariadb(tmp_path: Path) -> Iterator[MariaDBServer]:
    """A server of this test's own, free to be stopped or killed."""
    try:
        server = MariaDBServer(tmp_path / "private-mariadb")
    except MissingBinaryError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and MariaDB is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def use_database(
    monkeypatch: pytest.MonkeyPatch, directory: Path, credentials: Credentials, password: str
) -> None:
    """Point schedctl at ``credentials`` through the environment and a password file."""
    secret = directory / "db-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    for name in list(os.environ):
        if name.startswith("SCHEDULER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(directory)
    for key, value in {
        "SCHEDULER_DB_HOST": credentials.host,
        "SCHEDULER_DB_PORT": str(credentials.port),
        "SCHEDULER_DB_USER": credentials.user,
        "SCHEDULER_DB_NAME": credentials.database,
        "SCHEDULER_DB_PASSWORD_FILE": str(secret),
    }.items():
        monkeypatch.setenv(key, value)
