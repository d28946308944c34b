"""Structured logs: one JSON object per line on stderr, with secrets masked on the way out.

Fields ride along as ``log.info("scheduled", extra={"fields": {"jobs": 20}})`` and land as
top-level keys, so log tooling can filter on them without parsing messages. The redaction filter
is defence in depth: code must not log keys or passwords, but if one slips into a message, a
field or a traceback, it is masked before it reaches a collector that many people can read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any, TextIO

API_KEY_RE = re.compile(r"([0-9a-f]{8})\.[A-Za-z0-9_-]{40,}")
PASSWORD_RE = re.compile(r"""(?i)(passw(?:or)?d\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&"']+)""")
URL_PASSWORD_RE = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")  # mysql://user:secret@host
SENSITIVE_FIELDS = frozenset(
    {"password", "passwd", "api_key", "x-api-key", "authorization", "secret", "token"}
)
MASK = "[REDACTED]"
_CORE = ("time", "level", "logger", "message")
_HANDLER_MARK = "_jobshop_scheduler_handler"


def redact(text: str) -> str:
    """``text`` with API keys (their id kept), ``password=...`` values and URL passwords masked."""
    text = API_KEY_RE.sub(rf"\1.{MASK}", text)
    text = PASSWORD_RE.sub(rf"\1{MASK}", text)
    return URL_PASSWORD_RE.sub(rf"\1{MASK}@", text)


def redact_value(value: Any) -> Any:
    """Strings redacted; dicts, lists and tuples walked; values under sensitive names masked."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: MASK if str(k).lower() in SENSITIVE_FIELDS else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, fields, traceback and stack before any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the template, drop args that may hold secrets
            message = f"{record.msg} [log arguments did not fit the message; dropped]"
        record.msg, record.args = redact(message), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = redact_value(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _utc_iso(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                obj[f"field.{name}" if name in _CORE else str(name)] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return json.dumps(obj, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, fields appended as ``name=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure_logging(
    level: str | int = "INFO", json: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Route the root logger to ``stream`` (default stderr) through redaction; idempotent.

    Calling it again replaces the handler it installed before, not handlers others added.
    """
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}")
        level = resolved
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
