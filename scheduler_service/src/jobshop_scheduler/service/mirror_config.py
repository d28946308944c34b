"""The mirror config the operator writes into a ConfigMap mounted into the serving pods::

    {"target": "scheduler-shadow:50051", "percent": 10, "timeout_ms": 2000,
     "tls_ca_file": "/etc/mirror-tls/ca.crt", "api_key_file": "/etc/mirror-key/key"}

A missing file, an empty file or ``"percent": 0`` means mirroring is off. Errors name the file
and the field, never a secret's value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobshop_scheduler.service.watched_file import ConfigFileError, parse_json_object, read_text

DEFAULT_TIMEOUT_MS = 2000
MAX_TIMEOUT_MS = 600_000
_FIELDS = ("api_key_file", "percent", "target", "timeout_ms", "tls_ca_file")
_WARN_EVERY_S = 30.0


class MirrorConfigError(ConfigFileError):
    """A mirror config that cannot be used; names the file and field, never a secret's value."""


def bad_field(field: str, problem: str, source: str | None = None) -> MirrorConfigError:
    prefix = f"{source}: " if source else ""
    return MirrorConfigError(f"{prefix}field '{field}' {problem}", field)


def _check_target(target: str) -> None:
    host, sep, port = target.rpartition(":")
    if not sep or not host or host in ("[", "[]"):
        raise bad_field("target", "must be 'host:port'")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad_field("target", "must end in a port number 1-65535")


@dataclass(frozen=True)
class MirrorConfig:
    """Where to mirror, how much, and how; ranges are checked here, JSON types by the parser."""

    target: str
    percent: float
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    tls_ca_file: Path | None = None
    api_key_file: Path | None = None

    def __post_init__(self) -> None:
        _check_target(self.target)
        _check_ranges(self.percent, self.timeout_ms)


def _check_ranges(percent: float, timeout_ms: int, source: str | None = None) -> None:
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise bad_field("percent", "must be a number from 0 to 100", source)
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise bad_field("timeout_ms", f"must be an integer from 1 to {MAX_TIMEOUT_MS}", source)


def _number(data: dict[str, Any], field: str, source: str) -> float:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_field(field, "must be a number", source)
    return float(value)


def _optional_path(data: dict[str, Any], field: str, source: str) -> Path | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_field(field, "must be a non-empty path string or null", source)
    return Path(value)


def parse_mirror_config(text: str, source: str = "mirror config") -> MirrorConfig | None:
    """The config in ``text``; None when it turns mirroring off (empty, or percent 0)."""
    data = parse_json_object(text, source, _FIELDS, MirrorConfigError)
    if data is None:
        return None
    if "percent" not in data:
        raise bad_field("percent", "is required", source)
    percent = _number(data, "percent", source)
    timeout = data.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise bad_field("timeout_ms", "must be an integer", source)
    _check_ranges(percent, timeout, source)
    tls_ca_file = _optional_path(data, "tls_ca_file", source)
    api_key_file = _optional_path(data, "api_key_file", source)
    if percent == 0:
        return None
    target = data.get("target")
    if not isinstance(target, str):
        raise bad_field("target", "is required, a string 'host:port'", source)
    try:
        return MirrorConfig(target, percent, timeout, tls_ca_file, api_key_file)
    except MirrorConfigError as exc:
        raise MirrorConfigError(f"{source}: {exc}", exc.field) from None


def load_mirror_config(path: Path) -> MirrorConfig | None:
    """The config in ``path``; None (mirroring off) when the file is missing or says off."""
    text = read_text(path, MirrorConfigError)
    return None if text is None else parse_mirror_config(text, str(path))


def read_api_key(path: Path) -> str:
    """The key in ``path``, stripped; errors name the file but never repeat its content."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise bad_field("api_key_file", f"names a missing file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad_field("api_key_file", f"cannot be read ({type(exc).__name__}): {path}") from None
    if not key:
        raise bad_field("api_key_file", f"names an empty file: {path}")
    if not key.isprintable() or any(c.isspace() for c in key):
        raise bad_field("api_key_file", f"must hold one key on one line: {path}")
    return key
