"""Ingestion against the real MariaDB server, end to end through ``schedctl``.

A database seeded with 520 production-like jobs ingests into a snapshot that verify-data passes
and the planner schedules; each integrity rule broken once is named; a bad row, a wrong password,
an unreachable server and a server stopped mid-read all exit non-zero with a clear message and
leave the previous snapshot byte for byte as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobshop_scheduler.cli import main
from jobshop_scheduler.data import cli as data_cli
from jobshop_scheduler.data.database import Progress
from jobshop_scheduler.data.ingest import ingest
from jobshop_scheduler.domain.codec import load_problem, problem_from_dict, problem_sha256
from jobshop_scheduler.ops.preflight import check_database
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.rl.model_store import load_model
from testbed.mariadb import Credentials, MariaDBServer
from testbed.process import free_port

from .conftest import SEEDED_JOBS, SeededDatabase, seed_database, use_database

pytestmark = pytest.mark.mariadb

SNAPSHOT = Path("data") / "real_production_snapshot.json"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def base_doc(seeded: SeededDatabase, tmp_path_factory: pytest.TempPathFactory) -> Doc:
    """The seeded database's snapshot, ingested once for the corruption cases."""
    path = tmp_path_factory.mktemp("base") / "snapshot.json"
    asyncio.run(ingest(seeded.settings(snapshot_path=path)))
    doc: Doc = json.loads(path.read_text())
    return doc


@pytest.fixture()
def env(seeded: SeededDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """schedctl pointed at the seeded database; returns the working directory."""
    c = seeded.credentials
    use_database(monkeypatch, tmp_path, c, c.password)
    return tmp_path


def previous_snapshot(directory: Path, doc: Doc) -> bytes:
    """A snapshot already in place, as yesterday's ingest left it."""
    path = directory / SNAPSHOT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path.read_bytes()


def verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str]]:
    code = main(["verify-data", *args, "--json"])
    doc = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c["status"] for c in doc["checks"]}


def test_seeded_database_ingests_into_a_snapshot_that_verifies(
    seeded: SeededDatabase, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--expect-jobs", str(SEEDED_JOBS), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert f"wrote {SNAPSHOT}: {SEEDED_JOBS} jobs," in out
    assert seeded.credentials.password not in out + err
    assert [p.name for p in (env / "data").iterdir()] == [SNAPSHOT.name]  # no temp file left
    code, statuses = verify_json(capsys, "--expect-jobs", str(SEEDED_JOBS), "--against-db")
    assert code == 0
    assert set(statuses.values()) == {"PASS"}, statuses
    assert main(["verify-data", "--expect-jobs", str(SEEDED_JOBS)]) == 0
    assert "verify-data: PASS (10 pass, 1 skip)" in capsys.readouterr().out


def test_ingested_snapshot_is_scheduled_validly(base_doc: Doc, tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(base_doc))
    problem = load_problem(path)
    assert len(problem.jobs) == SEEDED_JOBS
    heuristic = Planner(None).plan(problem, "heuristic")
    assert heuristic.report.ok and heuristic.report.completion_rate == 1.0
    ppo = Planner(load_model()).plan(problem, "ppo")
    assert ppo.policy_used == "ppo", ppo.fallback_reason
    assert ppo.report.ok and ppo.report.completion_rate == 1.0
    assert ppo.batches == 4  # 520 jobs in batches of 170


def _rehash(doc: Doc) -> None:
    problem = problem_from_dict(doc["problem"], prefix="problem")
    doc["sha256"] = problem_sha256(problem)
    doc["counts"] = {
        "jobs": len(problem.jobs),
        "operations": problem.operation_count,
        "machines": len(problem.machines),
    }


def _first_alternative(doc: Doc) -> dict[str, Any]:
    alternative: dict[str, Any] = doc["problem"]["jobs"][0]["operations"][0]["alternatives"][0]
    return alternative


def _duplicate_job_id(doc: Doc) -> None:
    jobs = doc["problem"]["jobs"]
    jobs[1]["id"] = jobs[0]["id"]


CORRUPTIONS: dict[str, tuple[Callable[[Doc], None], bool]] = {
    # rule: (edit, recompute the header so that only this rule breaks)
    "format": (lambda d: d.update(format="jobshop-snapshot/v0"), False),
    "header-counts": (lambda d: d["counts"].update(jobs=d["counts"]["jobs"] + 1), False),
    "checksum": (lambda d: d["problem"]["jobs"][0].update(priority=7), False),
    "unique-ids": (_duplicate_job_id, True),
    "machines-exist": (lambda d: _first_alternative(d).update(machine_id="M99"), True),
    "positive-durations": (lambda d: _first_alternative(d).update(duration=0), True),
    "eligible-machine": (
        lambda d: d["problem"]["jobs"][0]["operations"][0].update(alternatives=[]),
        True,
    ),
    "problem-rules": (lambda d: d["problem"]["jobs"][0].update(priority=0), True),
}


@pytest.mark.parametrize("rule", [*CORRUPTIONS, "snapshot-file", "expected-jobs"])
def test_each_broken_rule_is_named(
    rule: str, base_doc: Doc, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(base_doc))
    expected = SEEDED_JOBS
    if rule in CORRUPTIONS:
        edit, rehash = CORRUPTIONS[rule]
        edit(doc)
        if rehash:
            _rehash(doc)
    previous_snapshot(env, doc)
    if rule == "snapshot-file":
        data = (env / SNAPSHOT).read_bytes()
        (env / SNAPSHOT).write_bytes(data[: len(data) // 2])  # truncated
    if rule == "expected-jobs":
        expected = SEEDED_JOBS + 1
    code, statuses = verify_json(capsys, "--expect-jobs", str(expected), "--against-db")
    assert code == 1
    assert {name for name, s in statuses.items() if s == "FAIL"} == {rule}
    main(["verify-data", "--expect-jobs", str(expected)])
    table = capsys.readouterr().out
    assert any(line.split()[:2] == [rule, "FAIL"] for line in table.splitlines()), table


def test_job_count_in_the_database_is_compared(
    seeded: SeededDatabase, base_doc: Doc, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous_snapshot(env, base_doc)
    seeded.execute("INSERT INTO jobs (id, release_time, priority) VALUES ('J999', 0, 1)")
    try:
        code, statuses = verify_json(capsys, "--against-db")
    finally:
        seeded.execute("DELETE FROM jobs WHERE id = 'J999'")
    assert code == 1
    assert {name for name, s in statuses.items() if s == "FAIL"} == {"db-job-count"}


def test_configured_queries_select_a_subset(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = {
        "JOBS": "SELECT id, release_time, due_date, priority FROM jobs WHERE id <= 'J100' "
        "ORDER BY id",
        "OPERATIONS": "SELECT job_id, id, seq FROM operations WHERE job_id <= 'J100' "
        "ORDER BY job_id, seq",
        "ALTERNATIVES": "SELECT job_id, operation_id, machine_id, duration FROM "
        "operation_machines WHERE job_id <= 'J100' ORDER BY job_id, operation_id, machine_id",
        "JOB_COUNT": "SELECT COUNT(*) FROM jobs WHERE id <= 'J100'",
    }
    for name, sql in queries.items():
        monkeypatch.setenv(f"SCHEDULER_DB_QUERY_{name}", sql)
    assert main(["ingest", "--expect-jobs", "100"]) == 0
    assert "100 jobs" in capsys.readouterr().out
    assert verify_json(capsys, "--expect-jobs", "100", "--against-db")[0] == 0


@pytest.mark.parametrize(
    ("query", "sql", "message"),
    [
        (
            "ALTERNATIVES",
            "SELECT job_id, operation_id, machine_id, CASE WHEN job_id = 'J007' THEN 0 ELSE "
            "duration END FROM operation_machines ORDER BY job_id, operation_id, machine_id",
            "job 'J007', operation 'J007-01', machine",
        ),
        (
            "JOBS",
            "SELECT id, release_time, due_date, priority FROM jobs WHERE id <> 'J300' ORDER BY id",
            "belongs to job 'J300', which was not read",
        ),
        ("OPERATIONS", "SELECT job_id, id FROM operations", "must return 3 column(s)"),
        ("MACHINES", "SELECT id FROM no_such_table", "a table the query reads does not exist"),
    ],
)
def test_bad_data_leaves_the_previous_snapshot(
    query: str,
    sql: str,
    message: str,
    *,
    base_doc: Doc,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = previous_snapshot(env, base_doc)
    monkeypatch.setenv(f"SCHEDULER_DB_QUERY_{query}", sql)
    code = main(["ingest"])
    err = capsys.readouterr().err
    assert code == (3 if query == "MACHINES" else 1)
    assert message in err
    assert f"the previous snapshot {SNAPSHOT} is unchanged" in err
    assert (env / SNAPSHOT).read_bytes() == before
    assert [p.name for p in (env / "data").iterdir()] == [SNAPSHOT.name]


def test_wrong_password_is_a_clear_error_that_never_shows_it(
    seeded: SeededDatabase,
    *,
    base_doc: Doc,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"Wr0ng-{secrets.token_urlsafe(12)}"
    use_database(monkeypatch, tmp_path, seeded.credentials, wrong)
    before = previous_snapshot(tmp_path, base_doc)
    assert main(["ingest"]) == 3
    ingest_out, ingest_err = capsys.readouterr()
    assert "connecting: access denied: check SCHEDULER_DB_USER and the password" in ingest_err
    assert main(["verify-data", "--against-db"]) == 1
    verify_out, verify_err = capsys.readouterr()
    assert "db-job-count        FAIL    cannot count jobs in the database" in verify_out
    assert main(["preflight", "--json", "--min-cores", "1"]) == 1
    preflight_out, preflight_err = capsys.readouterr()
    (database,) = [c for c in json.loads(preflight_out)["checks"] if c["name"] == "database"]
    assert database["status"] == "FAIL" and "access denied" in database["message"]
    out = ingest_out + verify_out + preflight_out
    err = ingest_err + verify_err + preflight_err
    everything = out + err + caplog.text
    assert wrong not in everything
    assert seeded.credentials.password not in everything
    assert (tmp_path / SNAPSHOT).read_bytes() == before


def test_unreachable_server_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = Credentials("127.0.0.1", free_port(), "jobshop", "x", "jobshop")
    use_database(monkeypatch, tmp_path, nobody, "x")
    assert main(["ingest"]) == 3
    err = capsys.readouterr().err
    assert "connecting: cannot reach the server" in err
    assert f"there is still no snapshot at {SNAPSHOT}" in err


def test_preflight_reaches_the_configured_database(seeded: SeededDatabase) -> None:
    check = check_database(seeded.settings(), skip=False)
    assert check.status.value == "PASS" and check.message.startswith("MariaDB ")


class _StopServer:
    """A progress bar that stops the server on the first batch of alternatives."""

    def __init__(self, name: str, server: MariaDBServer, how: str) -> None:
        self.name, self.server, self.how = name, server, how

    def update(self, n: int = 1) -> object:
        if self.name == "alternatives" and self.server.process.running():
            getattr(self.server, self.how)()
        return None

    def close(self) -> None:
        return None


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_server_stopped_mid_ingest_leaves_the_previous_snapshot(
    how: str,
    private_mariadb: MariaDBServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = private_mariadb.credentials
    seed_database(private_mariadb, c, 200)
    use_database(monkeypatch, tmp_path, c, c.password)
    monkeypatch.setenv("SCHEDULER_DB_FETCH_SIZE", "50")
    assert main(["ingest"]) == 0  # yesterday's snapshot
    before = (tmp_path / SNAPSHOT).read_bytes()
    capsys.readouterr()

    def progress(enabled: bool | None = None) -> Callable[[str], Progress]:
        return lambda name: _StopServer(name, private_mariadb, how)

    monkeypatch.setattr(data_cli, "tqdm_progress", progress)
    assert main(["ingest"]) == 3
    err = capsys.readouterr().err
    assert not private_mariadb.process.running()
    assert "lost the connection to the server" in err, err
    assert f"nothing written; the previous snapshot {SNAPSHOT} is unchanged" in err
    assert (tmp_path / SNAPSHOT).read_bytes() == before
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SNAPSHOT.name]
    assert c.password not in err
