"""Session fixtures that run the real servers: kube-apiserver + etcd, Prometheus, MariaDB.

A server whose binary is missing skips its tests locally (with the command that installs it) but
FAILS them under CI=true, so CI can never pass by silently testing less. A server that is
installed but does not start always fails, with the tail of its log.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from testbed import MissingBinaryError
from testbed.kube import KubeControlPlane
from testbed.mariadb import MariaDBServer
from testbed.prometheus import PrometheusServer

pytest_plugins = ["pytester"]  # tests/unit/test_testbed.py runs this conftest in a sub-session


class Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def describe(self) -> str: ...


S = TypeVar("S", bound=Server)
STARTED: list[str] = []


def _announce(config: pytest.Config, line: str) -> None:
    """Say it live (past output capture) and again in the closing summary."""
    STARTED.append(line)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(f"[testbed] {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STARTED:
        terminalreporter.section("real servers used")
        for line in STARTED:
            terminalreporter.write_line(line)


def start_server(
    request: pytest.FixtureRequest, factory: Callable[[Path], S], directory: Path
) -> Iterator[S]:
    """Build and start a server, announce it in the test log, stop it at the end."""
    try:
        server = factory(directory)  # looks its binaries up
    except MissingBinaryError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and a required test server is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        server.start()
    except BaseException:
        server.stop()  # a half-started server (etcd up, apiserver not) must not outlive the run
        raise
    _announce(request.config, f"started {server.describe()}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeControlPlane]:
    yield from start_server(request, KubeControlPlane, tmp_path_factory.mktemp("kube"))


@pytest.fixture(scope="session")
def prometheus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    yield from start_server(request, PrometheusServer, tmp_path_factory.mktemp("prometheus"))


@pytest.fixture(scope="session")
def mariadb(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MariaDBServer]:
    yield from start_server(request, MariaDBServer, tmp_path_factory.mktemp("mariadb"))


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped model folder, for tests that tamper with it."""
    from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR  # noqa: PLC0415

    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


@pytest.fixture()
def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty working directory and no SCHEDULER_* variables: a developer's .env or shell
    settings never change a result."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SCHEDULER_"):
            monkeypatch.delenv(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """``item.rep_call``: the call phase's report, for fixtures that print logs on failure."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
