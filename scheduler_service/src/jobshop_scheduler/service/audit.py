"""The audit trail: one JSON line per Schedule call, in its own rotating file.

It answers "who asked for what, and what did they get" after the fact, so it is kept apart from
the operational log: a dedicated logger that does not propagate (nothing reaches the root
logger's handlers), is not registered in the logging hierarchy (logging configuration cannot
attach to it or disable it) and ignores ``logging.disable``. Clients appear by key id, never by
key; error details are truncated and pass the same redaction as the logs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from jobshop_scheduler.service.logs import redact

FILE_NAME = "audit.jsonl"
MAX_DETAIL = 300
MAX_REQUEST_ID = 200  # client-chosen text: bounded so one caller cannot bloat the trail


def _now() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditTrail:
    """Appends audit records to ``directory/audit.jsonl``, rotating at ``max_bytes``.

    Thread-safe (the handler serialises writes); ``close()`` when the server stops.
    """

    def __init__(
        self, directory: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 5
    ) -> None:
        if max_bytes <= 0 or backups <= 0:
            raise ValueError(
                "max_bytes and backups must be positive (else the trail never rotates)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger("jobshop_scheduler.audit", logging.INFO)  # unregistered
        self._logger.propagate = False
        self._logger.addHandler(self._handler)
        self._closed = False

    def record(
        self,
        *,
        request_id: str,
        client: str,
        track: str,
        jobs: int,
        policy: str,
        model_version: str,
        makespan: int | None,
        baseline_makespan: int | None,
        latency_ms: float,
        status: grpc.StatusCode | str,
        detail: str = "",
    ) -> None:
        """Write one call's line; ``status`` is a grpc code (or its name), ``detail`` the error."""
        if self._closed:
            raise RuntimeError("audit trail is closed")
        line: dict[str, Any] = {
            "time": _now(),
            "request_id": request_id[:MAX_REQUEST_ID],
            "client": client,
            "track": track,
            "jobs": jobs,
            "policy": policy,
            "model_version": model_version,
            "makespan": makespan,
            "baseline_makespan": baseline_makespan,
            "latency_ms": round(latency_ms, 3),
            "status": status.name if isinstance(status, grpc.StatusCode) else status,
            "detail": redact(detail)[:MAX_DETAIL],
        }
        message = json.dumps(line, ensure_ascii=False)
        # handle(), not info(): a global logging.disable() must not switch the audit off.
        self._logger.handle(
            self._logger.makeRecord(self._logger.name, logging.INFO, __file__, 0, message, (), None)
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._logger.removeHandler(self._handler)
            self._handler.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditTrail({str(self.path)!r})"
