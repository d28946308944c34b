"""The integrity rules of a snapshot, each evaluated on its own so one report names every break.

``codec.load_problem`` stops at the first problem, which is right for a reader; an operator
deciding whether a snapshot may be used needs every rule's verdict. The data rules are the
request rules of ``problem_rules`` (one source of truth), grouped by the field they name:
ids -> unique-ids, an alternative's machine -> machines-exist, durations -> positive-durations,
an empty alternatives list -> eligible-machine, the rest (dates, priorities, empty lists,
horizon) -> problem-rules. A rule that cannot be evaluated because the file is unreadable is
SKIP, never PASS.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jobshop_scheduler.checklist import Check, failed, passed, skipped
from jobshop_scheduler.data.locate import describe
from jobshop_scheduler.domain.codec import SNAPSHOT_FORMAT, problem_from_dict, problem_sha256
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.problem_rules import ProblemError, validate_problem
from jobshop_scheduler.domain.strict_json import (
    ProblemFormatError,
    read_int,
    read_object,
    read_str,
)

SNAPSHOT_FILE = "snapshot-file"
FORMAT = "format"
HEADER_COUNTS = "header-counts"
CHECKSUM = "checksum"
UNIQUE_IDS = "unique-ids"
MACHINES_EXIST = "machines-exist"
POSITIVE_DURATIONS = "positive-durations"
ELIGIBLE_MACHINE = "eligible-machine"
PROBLEM_RULES = "problem-rules"
EXPECTED_JOBS = "expected-jobs"
DB_JOB_COUNT = "db-job-count"
RULES = (
    SNAPSHOT_FILE, FORMAT, HEADER_COUNTS, CHECKSUM, UNIQUE_IDS, MACHINES_EXIST,
    POSITIVE_DURATIONS, ELIGIBLE_MACHINE, PROBLEM_RULES, EXPECTED_JOBS, DB_JOB_COUNT,
)  # fmt: skip
DATA_RULES = (UNIQUE_IDS, MACHINES_EXIST, POSITIVE_DURATIONS, ELIGIBLE_MACHINE, PROBLEM_RULES)
SHOWN = 3

DbJobCount = int | Exception | None  # the database's count, why it is unknown, or not asked


@dataclass(frozen=True)
class Header:
    counts: dict[str, int]
    sha256: str


def _read_file(path: Path) -> tuple[Check, object]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return failed(SNAPSHOT_FILE, f"{path}: no such file (run schedctl ingest)"), None
    except OSError as exc:
        return failed(SNAPSHOT_FILE, f"{path}: cannot read ({exc.strerror})"), None
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return failed(SNAPSHOT_FILE, f"{path}: not valid JSON ({exc})"), None
    return passed(SNAPSHOT_FILE, f"{path} ({len(data) / 1e6:.2f} MB)"), doc


def _parse(doc: object) -> tuple[Header, Problem]:
    obj = read_object(doc, "", ("format", "created_at", "counts", "sha256", "problem"))
    fmt = read_str(obj["format"], "format")
    if fmt != SNAPSHOT_FORMAT:
        raise ProblemFormatError("format", f"expected {SNAPSHOT_FORMAT!r}, got {fmt!r}")
    try:
        datetime.fromisoformat(read_str(obj["created_at"], "created_at"))
    except ValueError:
        raise ProblemFormatError("created_at", "must be an ISO 8601 time") from None
    raw = read_object(obj["counts"], "counts", ("jobs", "operations", "machines"))
    counts = {key: read_int(value, f"counts.{key}") for key, value in raw.items()}
    sha = read_str(obj["sha256"], "sha256").lower()
    return Header(counts, sha), problem_from_dict(obj["problem"], prefix="problem")


def check_format(doc: object) -> tuple[Check, Header | None, Problem | None]:
    try:
        header, problem = _parse(doc)
    except ProblemFormatError as exc:
        return failed(FORMAT, str(exc)), None, None
    return passed(FORMAT, f"{SNAPSHOT_FORMAT}, header and problem well formed"), header, problem


def check_counts(header: Header, problem: Problem) -> Check:
    actual = {
        "jobs": len(problem.jobs),
        "operations": problem.operation_count,
        "machines": len(problem.machines),
    }
    wrong = [f"{k}: header {header.counts[k]}, data {v}" for k, v in actual.items()
             if header.counts[k] != v]  # fmt: skip
    if wrong:
        return failed(HEADER_COUNTS, "; ".join(wrong))
    return passed(HEADER_COUNTS, ", ".join(f"{v} {k}" for k, v in actual.items()))


def check_checksum(header: Header, problem: Problem) -> Check:
    actual = problem_sha256(problem)
    if actual != header.sha256:
        return failed(CHECKSUM, f"header {header.sha256[:16]}…, data hashes to {actual[:16]}…")
    return passed(CHECKSUM, f"sha256 {actual[:16]}… matches")


def rule_of(error: ProblemError) -> str:
    """The integrity rule a request-rule violation belongs to (by the field it names)."""
    leaf = error.field.rsplit(".", 1)[-1]
    if leaf == "id":
        return UNIQUE_IDS
    if leaf == "machine_id":
        return MACHINES_EXIST if error.message.startswith("unknown machine") else UNIQUE_IDS
    if leaf == "duration":
        return POSITIVE_DURATIONS
    if leaf == "alternatives":
        return ELIGIBLE_MACHINE
    return PROBLEM_RULES


_PASS_TEXT = {
    UNIQUE_IDS: "{machines} machine, {jobs} job and {operations} operation ids unique",
    MACHINES_EXIST: "all {alternatives} alternatives name one of the {machines} machines",
    POSITIVE_DURATIONS: "all {alternatives} durations positive",
    ELIGIBLE_MACHINE: "all {operations} operations have an eligible machine",
    PROBLEM_RULES: "release times, due dates, priorities and horizon valid",
}


def check_rules(problem: Problem) -> list[Check]:
    by_rule: dict[str, list[ProblemError]] = {rule: [] for rule in DATA_RULES}
    for error in validate_problem(problem):
        by_rule[rule_of(error)].append(error)
    sizes = {
        "machines": len(problem.machines),
        "jobs": len(problem.jobs),
        "operations": problem.operation_count,
        "alternatives": sum(len(op.alternatives) for j in problem.jobs for op in j.operations),
    }
    checks = []
    for rule, errors in by_rule.items():
        if not errors:
            checks.append(passed(rule, _PASS_TEXT[rule].format(**sizes)))
            continue
        shown = "; ".join(describe(problem, e) for e in errors[:SHOWN])
        more = f" (+{len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
        checks.append(failed(rule, f"{len(errors)} violation(s): {shown}{more}"))
    return checks


def check_expected(problem: Problem, expect_jobs: int | None) -> Check:
    if expect_jobs is None:
        return skipped(EXPECTED_JOBS, "no expectation (--expect-jobs, SCHEDULER_EXPECTED_JOBS)")
    if len(problem.jobs) != expect_jobs:
        return failed(
            EXPECTED_JOBS, f"snapshot has {len(problem.jobs)} jobs, expected {expect_jobs}"
        )
    return passed(EXPECTED_JOBS, f"{expect_jobs} jobs as expected")


def check_db_count(problem: Problem, db_jobs: DbJobCount) -> Check:
    if db_jobs is None:
        return skipped(DB_JOB_COUNT, "not asked (--against-db)")
    if isinstance(db_jobs, Exception):
        return failed(DB_JOB_COUNT, f"cannot count jobs in the database: {db_jobs}")
    if db_jobs != len(problem.jobs):
        return failed(DB_JOB_COUNT, f"snapshot has {len(problem.jobs)} jobs, database {db_jobs}")
    return passed(DB_JOB_COUNT, f"database still has {db_jobs} jobs")


def verify_snapshot(
    path: Path, expect_jobs: int | None = None, db_jobs: DbJobCount = None
) -> list[Check]:
    """One check per rule of ``RULES``, in that order."""
    file_check, doc = _read_file(path)
    checks = [file_check]
    header: Header | None = None
    problem: Problem | None = None
    if doc is not None:
        format_check, header, problem = check_format(doc)
        checks.append(format_check)
    if header is None or problem is None:
        return checks + _skip_rest(checks)
    checks += [check_counts(header, problem), check_checksum(header, problem)]
    checks += check_rules(problem)
    checks += [check_expected(problem, expect_jobs), check_db_count(problem, db_jobs)]
    return checks


def _skip_rest(done: Sequence[Check]) -> list[Check]:
    names = {c.name for c in done}
    return [skipped(rule, "snapshot unreadable") for rule in RULES if rule not in names]
