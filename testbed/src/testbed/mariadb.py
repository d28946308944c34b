"""A private MariaDB instance: its own data directory, socket and loopback port.

The instance gets a database and an application user with a random password, like a plant's
production database would; root stays reachable through the private socket for test set-up.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pymysql

from testbed import binaries
from testbed.process import ManagedProcess, ServerStartError, free_port

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Credentials:
    host: str
    port: int
    user: str
    password: str
    database: str


class MariaDBServer:
    def __init__(self, directory: Path, database: str = "jobshop", user: str = "jobshop") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.datadir = directory / "data"
        self.socket = directory / "mysqld.sock"
        self.port = free_port()
        self.credentials = Credentials(
            "127.0.0.1", self.port, user, secrets.token_urlsafe(18), database
        )
        run_as = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise
        self.process = ManagedProcess(
            "mariadbd",
            [
                binaries.find("mariadbd"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--pid-file={directory / 'mysqld.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                *run_as,
            ],
            directory / "mariadbd.log",
        )
        self._run_as = run_as

    def _install(self) -> None:
        if self.datadir.exists():
            return
        argv = [
            str(binaries.find("mariadb-install-db")),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *self._run_as,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerStartError(
                f"mariadb-install-db failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def root_connection(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2)

    def _ready(self) -> bool:
        self.root_connection().close()
        return True

    def start(self) -> None:
        self._install()
        self.process.start()
        self.process.wait_ready(self._ready, START_TIMEOUT)
        self._bootstrap()

    def _bootstrap(self) -> None:
        c = self.credentials
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{c.database}`")
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        f"CREATE USER IF NOT EXISTS %s@'{host}' IDENTIFIED BY %s",
                        (c.user, c.password),
                    )
                    cur.execute(f"GRANT ALL ON `{c.database}`.* TO %s@'{host}'", (c.user,))
            conn.commit()
        finally:
            conn.close()

    def describe(self) -> str:
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                row = cur.fetchone()
        finally:
            conn.close()
        return f"mariadb {row[0] if row else '?'} at 127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop(grace=30.0)

    def kill(self) -> None:
        self.process.kill()
