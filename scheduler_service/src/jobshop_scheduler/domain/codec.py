"""JSON documents <-> domain objects: requests, schedules and production snapshots.

Parsing is strict and total: any wrong type, missing key or unknown key becomes a
``ProblemFormatError`` naming the exact field (``jobs[3].operations[1].alternatives[0].duration``),
never a bare KeyError/TypeError, because the message goes back to the client that sent it.
Semantic rules (duplicate ids, positive durations, ...) live in ``validator.validate_problem``.
Snapshots carry a sha256 of the canonical problem JSON so a truncated or hand-edited file is
refused instead of silently training or benchmarking on different data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from jobshop_scheduler.domain.model import (
    Alternative,
    Assignment,
    Job,
    Operation,
    Problem,
    Schedule,
)
from jobshop_scheduler.domain.strict_json import (
    ProblemFormatError,
    join,
    json_kind,
    read_int,
    read_list,
    read_object,
    read_str,
)

__all__ = [
    "POLICIES",
    "SNAPSHOT_FORMAT",
    "ProblemFormatError",
    "SnapshotError",
    "canonical_json",
    "dump_snapshot",
    "load_problem",
    "policy_from_dict",
    "problem_from_dict",
    "problem_from_document",
    "problem_sha256",
    "problem_to_dict",
    "read_document",
    "request_schema",
    "schedule_from_dict",
    "schedule_to_dict",
    "snapshot_from_dict",
    "snapshot_to_dict",
    "time_budget_from_dict",
]

SNAPSHOT_FORMAT = "jobshop-snapshot/v1"
POLICIES = ("auto", "ppo", "heuristic")  # the proto's Policy enum, lower-case, without prefix


class SnapshotError(ProblemFormatError):
    """A snapshot whose header does not match its problem (sha256, counts, format)."""


# --- problems --------------------------------------------------------------------------------


def _alternative(value: object, path: str) -> Alternative:
    obj = read_object(value, path, ("machine_id", "duration"))
    machine = read_str(obj["machine_id"], f"{path}.machine_id")
    return Alternative(machine, read_int(obj["duration"], f"{path}.duration"))


def _operation(value: object, path: str) -> Operation:
    obj = read_object(value, path, ("id", "alternatives"))
    alts = read_list(obj["alternatives"], f"{path}.alternatives")
    return Operation(
        id=read_str(obj["id"], f"{path}.id"),
        alternatives=tuple(
            _alternative(a, f"{path}.alternatives[{k}]") for k, a in enumerate(alts)
        ),
    )


def _optional_int(obj: dict[str, Any], key: str, path: str, default: int) -> int:
    """Proto3 ``optional``: absent and null both mean the default."""
    value = obj.get(key)
    return default if value is None else read_int(value, f"{path}.{key}")


def _job(value: object, path: str) -> Job:
    obj = read_object(value, path, ("id", "operations"), ("release_time", "due_date", "priority"))
    ops = read_list(obj["operations"], f"{path}.operations")
    due = obj.get("due_date")
    return Job(
        id=read_str(obj["id"], f"{path}.id"),
        operations=tuple(_operation(o, f"{path}.operations[{j}]") for j, o in enumerate(ops)),
        release_time=_optional_int(obj, "release_time", path, 0),
        due_date=None if due is None else read_int(due, f"{path}.due_date"),
        priority=_optional_int(obj, "priority", path, 1),
    )


def policy_from_dict(d: object, *, prefix: str = "") -> str:
    """The request's policy ("auto" when absent), checked against the proto's enum."""
    if not isinstance(d, dict) or d.get("policy") is None:
        return "auto"
    policy = read_str(d["policy"], join(prefix, "policy"))
    if policy not in POLICIES:
        raise ProblemFormatError(join(prefix, "policy"), f"must be one of {list(POLICIES)}")
    return policy


def time_budget_from_dict(d: object, *, prefix: str = "") -> int | None:
    """The request's search budget in ms (None when absent: the server's default)."""
    if not isinstance(d, dict) or d.get("time_budget_ms") is None:
        return None
    path = join(prefix, "time_budget_ms")
    budget = read_int(d["time_budget_ms"], path)
    if budget < 0:
        raise ProblemFormatError(path, f"must be >= 0 (0: greedy only), got {budget}")
    return budget


def problem_from_dict(d: object, *, prefix: str = "") -> Problem:
    """Parse a request (or a snapshot's ``problem``); ``prefix`` roots the error paths."""
    obj = read_object(d, prefix, ("machines", "jobs"), ("request_id", "policy", "time_budget_ms"))
    policy_from_dict(obj, prefix=prefix)
    time_budget_from_dict(obj, prefix=prefix)
    machines = read_list(obj["machines"], join(prefix, "machines"))
    jobs = read_list(obj["jobs"], join(prefix, "jobs"))
    machine_ids = []
    for i, m in enumerate(machines):
        path = f"{join(prefix, 'machines')}[{i}]"
        machine_ids.append(read_str(read_object(m, path, ("id",))["id"], f"{path}.id"))
    return Problem(
        machines=tuple(machine_ids),
        jobs=tuple(_job(j, f"{join(prefix, 'jobs')}[{i}]") for i, j in enumerate(jobs)),
        request_id=read_str(obj.get("request_id", ""), join(prefix, "request_id")),
    )


def _job_to_dict(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {"id": job.id, "release_time": job.release_time}
    if job.due_date is not None:
        out["due_date"] = job.due_date
    out["priority"] = job.priority
    out["operations"] = [
        {
            "id": op.id,
            "alternatives": [
                {"machine_id": a.machine_id, "duration": a.duration} for a in op.alternatives
            ],
        }
        for op in job.operations
    ]
    return out


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The request document without ``policy``; defaults are written out, no due date omitted."""
    return {
        "request_id": problem.request_id,
        "machines": [{"id": m} for m in problem.machines],
        "jobs": [_job_to_dict(job) for job in problem.jobs],
    }


def canonical_json(problem: Problem) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal problems always hash equal."""
    text = json.dumps(
        problem_to_dict(problem), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return text.encode("utf-8")


def problem_sha256(problem: Problem) -> str:
    return hashlib.sha256(canonical_json(problem)).hexdigest()


# --- schedules -------------------------------------------------------------------------------

_ASSIGNMENT_FIELDS = ("job_id", "operation_id", "machine_id", "start", "end")


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """The schedule part of a response: ``assignments`` and ``makespan``."""
    return {
        "assignments": [
            {
                "job_id": a.job_id,
                "operation_id": a.operation_id,
                "machine_id": a.machine_id,
                "start": a.start,
                "end": a.end,
            }
            for a in schedule.assignments
        ],
        "makespan": schedule.makespan,
    }


def _assignment(value: object, path: str) -> Assignment:
    obj = read_object(value, path, _ASSIGNMENT_FIELDS)
    return Assignment(
        job_id=read_str(obj["job_id"], f"{path}.job_id"),
        operation_id=read_str(obj["operation_id"], f"{path}.operation_id"),
        machine_id=read_str(obj["machine_id"], f"{path}.machine_id"),
        start=read_int(obj["start"], f"{path}.start"),
        end=read_int(obj["end"], f"{path}.end"),
    )


def schedule_from_dict(d: object) -> Schedule:
    """Read ``assignments`` from a response (its other fields are ignored) or a bare schedule."""
    if not isinstance(d, dict):
        raise ProblemFormatError("", f"must be an object, got {json_kind(d)}")
    if "assignments" not in d:
        raise ProblemFormatError("assignments", "is required")
    items = read_list(d["assignments"], "assignments")
    return Schedule(tuple(_assignment(a, f"assignments[{i}]") for i, a in enumerate(items)))


# --- snapshots and files ---------------------------------------------------------------------


def snapshot_to_dict(problem: Problem, created_at: datetime | None = None) -> dict[str, Any]:
    when = created_at or datetime.now(UTC)
    return {
        "format": SNAPSHOT_FORMAT,
        "created_at": when.isoformat(timespec="seconds"),
        "counts": {
            "jobs": len(problem.jobs),
            "operations": problem.operation_count,
            "machines": len(problem.machines),
        },
        "sha256": problem_sha256(problem),
        "problem": problem_to_dict(problem),
    }


def _check_counts(counts: dict[str, Any], problem: Problem) -> None:
    actual = {
        "jobs": len(problem.jobs),
        "operations": problem.operation_count,
        "machines": len(problem.machines),
    }
    for key, value in actual.items():
        claimed = read_int(counts[key], f"counts.{key}")
        if claimed != value:
            raise SnapshotError(f"counts.{key}", f"header says {claimed}, the problem has {value}")


def snapshot_from_dict(d: object) -> Problem:
    """Parse a snapshot and verify its header against the problem it carries."""
    obj = read_object(d, "", ("format", "created_at", "counts", "sha256", "problem"))
    fmt = read_str(obj["format"], "format")
    if fmt != SNAPSHOT_FORMAT:
        raise SnapshotError("format", f"expected {SNAPSHOT_FORMAT!r}, got {fmt!r}")
    try:
        datetime.fromisoformat(read_str(obj["created_at"], "created_at"))
    except ValueError as exc:
        raise SnapshotError("created_at", "must be an ISO 8601 time") from exc
    counts = read_object(obj["counts"], "counts", ("jobs", "operations", "machines"))
    claimed = read_str(obj["sha256"], "sha256").lower()
    problem = problem_from_dict(obj["problem"], prefix="problem")
    _check_counts(counts, problem)
    actual = problem_sha256(problem)
    if claimed != actual:
        raise SnapshotError("sha256", f"header says {claimed}, the problem hashes to {actual}")
    return problem


def read_document(path: str | os.PathLike[str]) -> object:
    """The parsed JSON of a request or snapshot file."""
    try:
        return json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProblemFormatError("", f"not valid JSON: {exc}") from exc


def problem_from_document(doc: object) -> Problem:
    """A request or a snapshot, told apart by the snapshot's ``format`` key."""
    if isinstance(doc, dict) and "format" in doc:
        return snapshot_from_dict(doc)
    return problem_from_dict(doc)


def load_problem(path: str | os.PathLike[str]) -> Problem:
    """Read a request or a snapshot file."""
    return problem_from_document(read_document(path))


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def dump_snapshot(
    problem: Problem, path: str | os.PathLike[str], *, created_at: datetime | None = None
) -> str:
    """Write ``problem`` as a snapshot atomically; returns its sha256."""
    doc = snapshot_to_dict(problem, created_at)
    data = json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"
    _write_atomic(Path(path), data)
    return str(doc["sha256"])


def request_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a request, shipped as package data."""
    text = resources.files("jobshop_scheduler.domain").joinpath("schema/request.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema
