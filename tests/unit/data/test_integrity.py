"""verify-data's rules on small snapshots: grouping of request rules, SKIP on unreadable files.

The real-server tests (tests/mariadb) break each rule once on an ingested snapshot; these check
the evaluation itself without a database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobshop_scheduler.checklist import Check, Status
from jobshop_scheduler.cli import main
from jobshop_scheduler.data import integrity
from jobshop_scheduler.domain.codec import dump_snapshot
from jobshop_scheduler.domain.problem_rules import ProblemError
from jobshop_scheduler.instances.flexible import production_like

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_settings")]


@pytest.fixture()
def snapshot(tmp_path: Path) -> Path:
    path = tmp_path / "snap.json"
    dump_snapshot(production_like(12, seed=5), path)
    return path


def statuses(checks: list[Check]) -> dict[str, Status]:
    return {c.name: c.status for c in checks}


def test_valid_snapshot_passes_every_rule_it_can_check(snapshot: Path) -> None:
    checks = integrity.verify_snapshot(snapshot, expect_jobs=12, db_jobs=12)
    assert [c.name for c in checks] == list(integrity.RULES)
    assert set(statuses(checks).values()) == {Status.PASS}


def test_optional_rules_are_skipped_not_passed(snapshot: Path) -> None:
    result = statuses(integrity.verify_snapshot(snapshot))
    assert result[integrity.EXPECTED_JOBS] is Status.SKIP
    assert result[integrity.DB_JOB_COUNT] is Status.SKIP


def test_database_error_is_a_failed_count(snapshot: Path) -> None:
    checks = integrity.verify_snapshot(snapshot, db_jobs=RuntimeError("unreachable"))
    (db,) = [c for c in checks if c.name == integrity.DB_JOB_COUNT]
    assert db.status is Status.FAIL and "unreachable" in db.message


@pytest.mark.parametrize(
    ("content", "failing"),
    [
        (None, integrity.SNAPSHOT_FILE),
        (b"{truncated", integrity.SNAPSHOT_FILE),
        (b'{"format": "jobshop-snapshot/v0"}', integrity.FORMAT),
    ],
)
def test_unreadable_snapshot_skips_the_rest(
    tmp_path: Path, content: bytes | None, failing: str
) -> None:
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_bytes(content)
    checks = integrity.verify_snapshot(path, expect_jobs=3)
    result = statuses(checks)
    assert result[failing] is Status.FAIL
    after = list(integrity.RULES)[list(integrity.RULES).index(failing) + 1 :]
    assert all(result[name] is Status.SKIP for name in after)


def test_several_broken_rules_are_all_reported(snapshot: Path) -> None:
    doc: dict[str, Any] = json.loads(snapshot.read_text())
    jobs = doc["problem"]["jobs"]
    jobs[1]["id"] = jobs[0]["id"]
    jobs[2]["operations"][0]["alternatives"][0]["duration"] = -4
    snapshot.write_text(json.dumps(doc))
    failed = {c.name for c in integrity.verify_snapshot(snapshot) if c.status is Status.FAIL}
    assert failed == {integrity.CHECKSUM, integrity.UNIQUE_IDS, integrity.POSITIVE_DURATIONS}


@pytest.mark.parametrize(
    ("field", "message", "rule"),
    [
        ("machines[1].id", "duplicate machine id 'M1' (first at machines[0])", "unique-ids"),
        ("jobs[2].operations[0].id", "must not be empty", "unique-ids"),
        ("jobs[0].operations[0].alternatives[1].machine_id", "unknown machine 'X'",
         "machines-exist"),
        ("jobs[0].operations[0].alternatives[1].machine_id", "machine 'M1' listed twice for one "
         "operation", "unique-ids"),
        ("jobs[0].operations[0].alternatives[0].duration", "must be positive, got 0",
         "positive-durations"),
        ("jobs[0].operations[3].alternatives", "at least one machine is required",
         "eligible-machine"),
        ("jobs[0].priority", "must be from 1 to 2147483647, got 0", "problem-rules"),
        ("jobs[0].operations", "a job needs at least one operation", "problem-rules"),
        ("jobs", "latest release plus total work is 2, over the limit of 1", "problem-rules"),
    ],
)  # fmt: skip
def test_request_rules_map_to_integrity_rules(field: str, message: str, rule: str) -> None:
    assert integrity.rule_of(ProblemError(field, message)) == rule


def test_cli_table_and_json(snapshot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-data", str(snapshot), "--expect-jobs", "12"]) == 0
    table = capsys.readouterr().out
    assert "expected-jobs       PASS    12 jobs as expected" in table
    assert table.rstrip().endswith("verify-data: PASS (10 pass, 1 skip)")
    assert main(["verify-data", str(snapshot), "--expect-jobs", "13", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [c["name"] for c in doc["checks"] if c["status"] == "FAIL"] == ["expected-jobs"]
