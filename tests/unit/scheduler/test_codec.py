"""JSON codec: round-trips, exact error paths, snapshots (sha256, counts) and atomic writes."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobshop_scheduler.domain import codec
from jobshop_scheduler.domain.codec import (
    ProblemFormatError,
    SnapshotError,
    canonical_json,
    dump_snapshot,
    load_problem,
    policy_from_dict,
    problem_from_dict,
    problem_sha256,
    problem_to_dict,
    schedule_from_dict,
    schedule_to_dict,
)
from jobshop_scheduler.domain.model import (
    Alternative,
    Assignment,
    Job,
    Operation,
    Problem,
    Schedule,
)

pytestmark = pytest.mark.unit

SMALL = Path(__file__).resolve().parents[3] / "examples" / "requests" / "small.json"
INT64 = st.integers(-(2**63), 2**63 - 1)


def small_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SMALL.read_text())
    return doc


@st.composite
def problems(draw: st.DrawFn, valid: bool = True) -> Problem:
    """Problems; ``valid`` keeps them within validate_problem's rules, else any shape."""
    ident = st.text(min_size=1 if valid else 0, max_size=6)
    number = st.integers(1, 10**6) if valid else INT64
    machines = draw(st.lists(ident, min_size=1, max_size=4, unique=True))
    alternative = st.builds(Alternative, st.sampled_from(machines), number)
    operation = st.builds(
        Operation,
        ident,
        st.lists(alternative, min_size=1, max_size=3, unique_by=lambda a: a.machine_id).map(tuple),
    )
    job = st.builds(
        Job,
        ident,
        st.lists(operation, min_size=1, max_size=4, unique_by=lambda o: o.id).map(tuple),
        release_time=st.integers(0, 10**6) if valid else INT64,
        due_date=st.none() | (st.integers(10**6, 10**7) if valid else INT64),
        priority=st.integers(1, 3) if valid else INT64,
    )
    jobs = draw(st.lists(job, min_size=1, max_size=4, unique_by=lambda j: j.id))
    return Problem(tuple(machines), tuple(jobs), draw(st.text(max_size=8)))


@settings(deadline=None, max_examples=60)
@given(problems(valid=False))
def test_problem_round_trips_through_json(problem: Problem) -> None:
    text = json.dumps(problem_to_dict(problem))
    assert problem_from_dict(json.loads(text)) == problem


@settings(deadline=None, max_examples=30)
@given(problems(), st.randoms())
def test_canonical_json_ignores_key_order(problem: Problem, rnd: Any) -> None:
    def shuffle(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffle(v) for k, v in items}
        return [shuffle(v) for v in value] if isinstance(value, list) else value

    again = problem_from_dict(shuffle(problem_to_dict(problem)))
    assert canonical_json(again) == canonical_json(problem)


@settings(deadline=None, max_examples=40)
@given(
    st.lists(
        st.builds(
            Assignment, st.text(max_size=4), st.text(max_size=4), st.text(max_size=4), INT64, INT64
        ),
        max_size=6,
    )
)
def test_schedule_round_trips(assignments: list[Assignment]) -> None:
    schedule = Schedule(tuple(assignments))
    doc = json.loads(json.dumps(schedule_to_dict(schedule)))
    assert doc["makespan"] == schedule.makespan
    assert schedule_from_dict(doc) == schedule


def test_canonical_json_is_sorted_and_compact() -> None:
    problem = problem_from_dict(small_doc())
    raw = canonical_json(problem)
    assert b" " not in raw and b"\n" not in raw
    assert raw.startswith(b'{"jobs":[{"due_date":60,"id":"J1","operations":')
    assert problem_sha256(problem) == hashlib.sha256(raw).hexdigest()


def test_defaults_and_nulls() -> None:
    doc = small_doc()
    doc["jobs"][0].update(release_time=None, due_date=None, priority=None)
    del doc["request_id"]
    problem = problem_from_dict(doc)
    assert problem.request_id == ""
    assert (problem.jobs[0].release_time, problem.jobs[0].due_date, problem.jobs[0].priority) == (
        0,
        None,
        1,
    )
    assert problem.jobs[3].due_date is None
    assert "due_date" not in problem_to_dict(problem)["jobs"][3]


def test_policy() -> None:
    assert policy_from_dict(small_doc()) == "auto"
    assert policy_from_dict({"policy": "ppo"}) == "ppo"
    assert policy_from_dict({}) == "auto"


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


DELETE = object()
BAD_SHAPES: list[tuple[tuple[Any, ...], Any, str, str]] = [
    (("jobs",), DELETE, "jobs", "is required"),
    (("jobz",), [], "jobz", "unknown field"),
    (("policy",), "fast", "policy", "must be one of"),
    (("request_id",), 5, "request_id", "must be a string, got integer"),
    (("machines",), {"id": "M1"}, "machines", "must be an array, got object"),
    (("machines", 1), "M2", "machines[1]", "must be an object, got string"),
    (("machines", 0, "id"), 1, "machines[0].id", "must be a string, got integer"),
    (("jobs", 0, "release_time"), "0", "jobs[0].release_time", "must be an integer, got string"),
    (("jobs", 2, "priority"), 1.5, "jobs[2].priority", "must be an integer, got a non-integral"),
    (("jobs", 1, "due_date"), True, "jobs[1].due_date", "must be an integer, got boolean"),
    (("jobs", 3, "operations"), None, "jobs[3].operations", "must be an array, got null"),
    (
        ("jobs", 2, "operations", 1, "alternatives"),
        DELETE,
        "jobs[2].operations[1].alternatives",
        "is required",
    ),
    (
        ("jobs", 1, "operations", 2, "alternatives", 0, "duration"),
        "12",
        "jobs[1].operations[2].alternatives[0].duration",
        "must be an integer, got string",
    ),
    (
        ("jobs", 1, "operations", 2, "alternatives", 0, "duration"),
        12.5,
        "jobs[1].operations[2].alternatives[0].duration",
        "must be an integer, got a non-integral number",
    ),
    (
        ("jobs", 0, "operations", 0, "alternatives", 1, "machine"),
        "M2",
        "jobs[0].operations[0].alternatives[1].machine",
        "unknown field",
    ),
]


@pytest.mark.parametrize(("path", "value", "field", "message"), BAD_SHAPES)
def test_errors_name_the_exact_field(
    path: tuple[Any, ...], value: Any, field: str, message: str
) -> None:
    doc = small_doc()
    _set(doc, path, value)
    with pytest.raises(ProblemFormatError) as info:
        problem_from_dict(doc)
    assert info.value.field == field
    assert message in info.value.message


@pytest.mark.parametrize("doc", [None, [], "x", 3])
def test_a_non_object_request(doc: Any) -> None:
    with pytest.raises(ProblemFormatError, match="must be an object") as info:
        problem_from_dict(doc)
    assert info.value.field == ""


def _nodes(value: Any, path: str = "") -> Iterator[tuple[str, Callable[[Any], None]]]:
    """(JSON path, setter) for every node below the root."""
    children = (
        enumerate(value)
        if isinstance(value, list)
        else value.items()
        if isinstance(value, dict)
        else []
    )
    for key, child in children:
        child_path = (
            f"{path}[{key}]" if isinstance(value, list) else (f"{path}.{key}" if path else str(key))
        )
        yield child_path, _setter(value, key)
        yield from _nodes(child, child_path)


def _setter(container: Any, key: Any) -> Callable[[Any], None]:
    def set_value(new: Any) -> None:
        container[key] = new

    return set_value


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_any_corruption_is_a_format_error_on_the_right_path(data: st.DataObject) -> None:
    doc = small_doc()
    nodes = list(_nodes(doc))
    path, setter = data.draw(st.sampled_from(nodes))
    setter(data.draw(JSON_VALUES))
    try:
        problem_from_dict(doc)
    except ProblemFormatError as exc:
        assert exc.field.startswith(path), (exc.field, path)  # at the corrupted node or inside


def test_schedule_from_a_full_response() -> None:
    response: dict[str, Any] = {
        "request_id": "r1",
        "assignments": [
            {"job_id": "J1", "operation_id": "J1-1", "machine_id": "M1", "start": 0, "end": 12}
        ],
        "makespan": 12,
        "baseline_makespan": 14,
        "completion_rate": 1.0,
        "unscheduled": [],
        "model_version": "v3",
        "latency_ms": 4.2,
        "policy_used": "ppo",
    }
    assert schedule_from_dict(response) == Schedule((Assignment("J1", "J1-1", "M1", 0, 12),))
    response["assignments"].append(
        {"job_id": "J1", "operation_id": "J1-2", "machine_id": "M1", "start": "12", "end": 20}
    )
    with pytest.raises(ProblemFormatError) as info:
        schedule_from_dict(response)
    assert info.value.field == "assignments[1].start"
    with pytest.raises(ProblemFormatError, match="assignments: is required"):
        schedule_from_dict({"makespan": 3})


# --- files and snapshots ------------------------------------------------------------------


def test_load_a_request_file() -> None:
    problem = load_problem(SMALL)
    assert (len(problem.jobs), problem.operation_count, len(problem.machines)) == (4, 12, 3)
    assert problem.request_id == "example-small"


def test_load_rejects_bad_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"jobs": [')
    with pytest.raises(ProblemFormatError, match="not valid JSON") as info:
        load_problem(bad)
    assert info.value.field == ""


def test_snapshot_round_trip(tmp_path: Path) -> None:
    problem = load_problem(SMALL)
    target = tmp_path / "snap.json"
    when = datetime(2025, 3, 1, 6, 30, tzinfo=UTC)
    sha = dump_snapshot(problem, target, created_at=when)
    doc = json.loads(target.read_text())
    assert doc["format"] == "jobshop-snapshot/v1"
    assert doc["created_at"] == "2025-03-01T06:30:00+00:00"
    assert doc["counts"] == {"jobs": 4, "operations": 12, "machines": 3}
    assert doc["sha256"] == sha == problem_sha256(problem)
    assert load_problem(target) == problem


def _tampered(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    target = tmp_path / "snap.json"
    dump_snapshot(load_problem(SMALL), target)
    doc = json.loads(target.read_text())
    change(doc)
    target.write_text(json.dumps(doc))
    return target


def test_snapshot_sha_mismatch(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["problem"]["jobs"][1]["operations"][0]["alternatives"][0]["duration"] += 1

    with pytest.raises(SnapshotError, match="hashes to") as info:
        load_problem(_tampered(tmp_path, edit))
    assert info.value.field == "sha256"


@pytest.mark.parametrize("key", ["jobs", "operations", "machines"])
def test_snapshot_count_mismatch(tmp_path: Path, key: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["counts"][key] += 1

    with pytest.raises(SnapshotError, match="header says") as info:
        load_problem(_tampered(tmp_path, edit))
    assert info.value.field == f"counts.{key}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(format="jobshop-snapshot/v2"), "format"),
        (lambda d: d.update(created_at="yesterday"), "created_at"),
        (lambda d: d["counts"].pop("machines"), "counts.machines"),
        (lambda d: d["problem"]["jobs"][2].update(priority="high"), "problem.jobs[2].priority"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_snapshot_header_and_problem_errors(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    with pytest.raises(ProblemFormatError) as info:
        load_problem(_tampered(tmp_path, change))
    assert info.value.field == field


def test_snapshot_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problem = load_problem(SMALL)
    target = tmp_path / "snap.json"
    dump_snapshot(problem, target)
    dump_snapshot(problem, target)  # replacing an existing file
    assert [p.name for p in tmp_path.iterdir()] == ["snap.json"]
    before = target.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    bigger = Problem(problem.machines, problem.jobs[:2], "other")
    with pytest.raises(OSError, match="disk full"):
        dump_snapshot(bigger, target)
    assert [p.name for p in tmp_path.iterdir()] == ["snap.json"]
    assert target.read_bytes() == before


def test_snapshot_is_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "snap.json"
    dump_snapshot(load_problem(SMALL), target)
    assert os.stat(target).st_mode & 0o044 == 0o044


def test_integral_numbers_are_integers() -> None:
    doc = small_doc()
    doc["jobs"][0]["operations"][0]["alternatives"][0]["duration"] = 12.0
    problem = problem_from_dict(doc)
    assert problem.jobs[0].operations[0].alternatives[0] == Alternative("M1", 12)
    assert type(problem.jobs[0].operations[0].alternatives[0].duration) is int


def test_parsing_does_not_mutate_the_document() -> None:
    doc = small_doc()
    original = copy.deepcopy(doc)
    problem_from_dict(doc)
    assert doc == original  # parsing never mutates the caller's document


# --- the JSON Schema ----------------------------------------------------------------------
# The schema ships for clients to check requests before sending them; jsonschema (a dev
# dependency) checks here that it accepts what the codec accepts and names the same fields.

SCHEMA_PATH = Path(codec.__file__).resolve().parent / "schema" / "request.schema.json"


def _path(parts: Iterator[str | int]) -> str:
    """A jsonschema path in the codec's notation: ``jobs[0].operations[1].id``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _named(error: jsonschema.ValidationError) -> list[str]:
    """The field an error is about: required and additional keys are named in the message."""
    where = list(error.absolute_path)
    if error.validator == "required":
        return [_path(iter([*where, error.message.split("'")[1]]))]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [_path(iter([*where, key])) for key in extra]
    return [_path(iter(where))]


def schema_errors(schema: dict[str, Any], value: Any, _root: Any = None) -> list[str]:
    """Paths (in the codec's notation) where ``value`` breaks ``schema``, by jsonschema."""
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(field for error in validator.iter_errors(value) for field in _named(error))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded = codec.request_schema()
    assert loaded == json.loads(SCHEMA_PATH.read_text())  # served from package data
    return loaded


def test_the_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema_errors({"type": "integer"}, True) == [""]
    assert schema_errors({"type": "integer"}, 3.0) == []


def test_examples_match_the_schema(schema: dict[str, Any]) -> None:
    from jobshop_scheduler.instances.flexible import production_like  # noqa: PLC0415

    assert schema_errors(schema, small_doc(), schema) == []
    generated = problem_to_dict(production_like(30, seed=4)) | {"policy": "ppo"}
    assert schema_errors(schema, generated, schema) == []


@settings(deadline=None, max_examples=60)
@given(problems(), st.sampled_from(["auto", "ppo", "heuristic", None]))
def test_encoded_valid_problems_match_the_schema(problem: Problem, policy: str | None) -> None:
    doc = json.loads(json.dumps(problem_to_dict(problem) | {"policy": policy}))
    assert schema_errors(codec.request_schema(), doc, codec.request_schema()) == []


@pytest.mark.parametrize(("path", "value", "field", "message"), BAD_SHAPES)
def test_schema_rejects_what_the_codec_rejects(
    schema: dict[str, Any], path: tuple[Any, ...], value: Any, field: str, message: str
) -> None:
    doc = small_doc()
    _set(doc, path, value)
    assert schema_errors(schema, doc, schema) == [field]


SEMANTIC: list[tuple[tuple[Any, ...], Any]] = [
    (("jobs", 1, "operations", 2, "alternatives", 0, "duration"), 0),
    (("jobs", 0, "release_time"), -1),
    (("jobs", 2, "priority"), 0),
    (("jobs", 3, "id"), ""),
    (("jobs", 2, "operations", 1, "id"), ""),
    (("jobs", 1, "operations"), []),
    (("jobs", 0, "operations", 2, "alternatives"), []),
    (("jobs",), []),
]


@pytest.mark.parametrize(("path", "value"), SEMANTIC)
def test_schema_limits_are_the_validators_rules(
    schema: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    """Where the schema is stricter than the shape, validate_problem names the same field."""
    from jobshop_scheduler.domain.validator import validate_problem  # noqa: PLC0415

    doc = small_doc()
    _set(doc, path, value)
    expected = schema_errors(schema, doc, schema)
    assert len(expected) == 1
    assert expected == [e.field for e in validate_problem(problem_from_dict(doc))]
