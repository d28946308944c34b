"""The audit trail (JSON lines, rotation, isolation from the log) and redacting JSON logs."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from jobshop_scheduler.service.audit import AuditTrail
from jobshop_scheduler.service.keys import generate_key
from jobshop_scheduler.service.logs import (
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    redact,
)

pytestmark = pytest.mark.unit

FIELDS = {
    "time",
    "request_id",
    "client",
    "track",
    "jobs",
    "policy",
    "model_version",
    "makespan",
    "baseline_makespan",
    "latency_ms",
    "status",
    "detail",
}


def call(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "request_id": "r-1",
        "client": "1a2b3c4d",
        "track": "canary",
        "jobs": 20,
        "policy": "auto",
        "model_version": "ppo-2025-01",
        "makespan": 1200,
        "baseline_makespan": 1350,
        "latency_ms": 12.34567,
        "status": grpc.StatusCode.OK,
    }
    return {**args, **overrides}


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging changes the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_audit_lines_are_json_with_the_fields(tmp_path: Path) -> None:
    with AuditTrail(tmp_path / "audit") as trail:
        trail.record(**call())
        trail.record(
            **call(
                status=grpc.StatusCode.INVALID_ARGUMENT,
                makespan=None,
                baseline_makespan=None,
                detail="job J7: " + "x" * 1000,
            )
        )
    ok, failed = read_lines(tmp_path / "audit" / "audit.jsonl")
    assert set(ok) == FIELDS
    assert ok["status"] == "OK" and ok["detail"] == "" and ok["client"] == "1a2b3c4d"
    assert ok["jobs"] == 20 and ok["makespan"] == 1200 and ok["latency_ms"] == 12.346
    assert ok["time"].endswith("Z") and len(ok["time"]) == len("2025-01-01T00:00:00.000Z")
    assert failed["status"] == "INVALID_ARGUMENT" and failed["makespan"] is None
    assert failed["detail"].startswith("job J7: ") and len(failed["detail"]) == 300


def test_audit_rotates_past_max_bytes(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path, max_bytes=2000, backups=2)
    for i in range(40):
        trail.record(**call(request_id=f"r-{i}"))
    trail.close()
    assert (tmp_path / "audit.jsonl.1").exists()
    assert (tmp_path / "audit.jsonl.2").exists()
    assert not (tmp_path / "audit.jsonl.3").exists()
    lines = [
        line
        for name in ("audit.jsonl.2", "audit.jsonl.1", "audit.jsonl")
        for line in read_lines(tmp_path / name)
    ]
    assert lines[-1]["request_id"] == "r-39"
    assert all((tmp_path / n).stat().st_size <= 2000 for n in ("audit.jsonl", "audit.jsonl.1"))


def test_audit_holds_no_key_material_and_stays_out_of_the_log(
    tmp_path: Path, root_logging: None
) -> None:
    key, _ = generate_key()
    key_id = key.split(".")[0]
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    trail = AuditTrail(tmp_path)
    trail.record(**call(client=key_id, detail=f"rejected x-api-key {key} password=hunter2"))
    trail.close()
    text = (tmp_path / "audit.jsonl").read_text()
    assert key_id in text
    assert key.split(".")[1] not in text and "hunter2" not in text
    assert stream.getvalue() == ""  # audit lines never reach the normal log


def test_audit_is_thread_safe(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path)

    def write(n: int) -> None:
        for i in range(50):
            trail.record(**call(request_id=f"t{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    trail.close()
    assert len({line["request_id"] for line in read_lines(tmp_path / "audit.jsonl")}) == 400


def test_audit_refuses_records_after_close(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path)
    trail.close()
    trail.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        trail.record(**call())


def test_json_logs_parse_and_carry_fields(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    log = logging.getLogger("jobshop_scheduler.test")
    log.debug("not shown")
    log.info("scheduled %d jobs", 20, extra={"fields": {"jobs": 20, "time": "clash"}})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "scheduled 20 jobs" and first["level"] == "INFO"
    assert first["logger"] == "jobshop_scheduler.test" and first["jobs"] == 20
    assert first["time"].endswith("Z") and first["field.time"] == "clash"
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_configure_logging_is_idempotent_and_checks_the_level(root_logging: None) -> None:
    before = len(logging.getLogger().handlers)
    configure_logging(stream=io.StringIO())
    configure_logging(json=False, stream=io.StringIO())
    assert len(logging.getLogger().handlers) == before + 1
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")


def test_redaction_masks_a_planted_key_and_password(root_logging: None) -> None:
    key, _ = generate_key()
    key_id, secret = key.split(".")
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    log = logging.getLogger("jobshop_scheduler.test")
    log.info("client sent %s with password=hunter2", key)
    log.info(
        "connecting",
        extra={
            "fields": {
                "dsn": "mysql://sched:s3cr3t@db:3306/x",
                "nested": {"api_key": "plain", "list": [f"Bearer {key}"]},
                "note": 'PASSWORD: "two words"',
            }
        },
    )
    try:
        raise RuntimeError(f"auth failed for {key}")
    except RuntimeError:
        log.exception("error")
    text = stream.getvalue()
    for secret_text in (secret, "hunter2", "s3cr3t", "plain", "two words"):
        assert secret_text not in text, secret_text
    first, second, third = (json.loads(line) for line in text.splitlines())
    assert first["message"] == f"client sent {key_id}.[REDACTED] with password=[REDACTED]"
    assert second["dsn"] == "mysql://sched:[REDACTED]@db:3306/x"
    assert second["nested"]["api_key"] == "[REDACTED]"
    assert "[REDACTED]" in third["exception"]


def test_text_format_also_redacts(root_logging: None) -> None:
    key, _ = generate_key()
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    logging.getLogger("jobshop_scheduler.test").warning("key %s", key, extra={"fields": {"n": 1}})
    assert key.split(".")[1] not in stream.getvalue() and "n=1" in stream.getvalue()


def test_filter_and_formatter_work_on_their_own() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw %s", ("password=abc",), None)
    assert RedactingFilter().filter(record)
    assert json.loads(JsonFormatter().format(record))["message"] == "pw password=[REDACTED]"
    assert redact("nothing secret here") == "nothing secret here"
