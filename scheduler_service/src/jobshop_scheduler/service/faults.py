"""Test-only fault injection, so rollout tests can make a candidate slow, lossy or failing.

Honoured only when ``SCHEDULER_ENABLE_FAULTS=1``: without it nothing is read or logged, so a
faults file that leaks into a production pod does nothing. The file is JSON::

    {"latency_ms": 200, "drop_job_fraction": 0.1, "error_rate": 0.05}

Every field is optional (default 0: no fault); a missing or empty file means no faults. Tests
rewrite the file to flip faults at runtime; the injector watches it like the mirror config.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobshop_scheduler.service.sampling import stable_unit
from jobshop_scheduler.service.watched_file import (
    ConfigFileError,
    ConfigWatcher,
    parse_json_object,
    read_text,
)

log = logging.getLogger(__name__)

ENABLE_ENV = "SCHEDULER_ENABLE_FAULTS"
MAX_LATENCY_MS = 60_000
_FIELDS = ("latency_ms", "drop_job_fraction", "error_rate")


class FaultConfigError(ConfigFileError):
    """A faults file that cannot be used; names the file and the field."""


def _check_fraction(field: str, value: float) -> None:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise FaultConfigError(f"field '{field}' must be a number from 0 to 1", field)


@dataclass(frozen=True)
class FaultConfig:
    """The faults in force; all zero means none."""

    latency_ms: int = 0
    drop_job_fraction: float = 0.0
    error_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            msg = f"field 'latency_ms' must be an integer from 0 to {MAX_LATENCY_MS}"
            raise FaultConfigError(msg, "latency_ms")
        _check_fraction("drop_job_fraction", self.drop_job_fraction)
        _check_fraction("error_rate", self.error_rate)

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.drop_job_fraction or self.error_rate)


def _typed(data: dict[str, Any], field: str, source: str) -> Any:
    value = data.get(field, 0)
    wanted: tuple[type, ...] = (int,) if field == "latency_ms" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        kind = "an integer" if field == "latency_ms" else "a number"
        raise FaultConfigError(f"{source}: field '{field}' must be {kind}", field)
    return value


def parse_faults(text: str, source: str = "faults config") -> FaultConfig:
    """The faults in ``text``; empty text means none."""
    data = parse_json_object(text, source, _FIELDS, FaultConfigError)
    if data is None:
        return FaultConfig()
    values = [_typed(data, field, source) for field in _FIELDS]
    try:
        return FaultConfig(values[0], float(values[1]), float(values[2]))
    except FaultConfigError as exc:
        raise FaultConfigError(f"{source}: {exc}", exc.field) from None


def faults_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the process was started with fault injection allowed."""
    return (os.environ if environ is None else environ).get(ENABLE_ENV) == "1"


def load_faults(
    path: Path | str | None, environ: Mapping[str, str] | None = None
) -> FaultConfig | None:
    """The faults in ``path``; None, silently, unless ``SCHEDULER_ENABLE_FAULTS=1``."""
    if path is None or not faults_enabled(environ):
        return None
    path = Path(path)
    text = read_text(path, FaultConfigError)
    return FaultConfig() if text is None else parse_faults(text, str(path))


class FaultInjector:
    """The faults in force, re-read when the file changes; inert unless the env var allows."""

    def __init__(
        self,
        path: Path | str | None,
        interval_s: float = 0.5,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._environ = environ
        self.enabled = self.path is not None and faults_enabled(environ)
        self._current: FaultConfig | None = FaultConfig() if self.enabled else None
        self._watcher = (
            ConfigWatcher(self.path, interval_s, on_change=self.reload)
            if self.enabled and self.path is not None
            else None
        )

    def current(self) -> FaultConfig | None:
        """The faults to inject now; None when fault injection is not enabled."""
        return self._current

    def reload(self) -> None:
        """Re-read the file now; a bad file is logged and the previous faults kept."""
        if not self.enabled:
            return
        try:
            faults = load_faults(self.path, self._environ)
        except FaultConfigError as exc:
            log.warning("faults file rejected, keeping the previous faults: %s", exc)
            return
        if faults != self._current:
            log.warning("fault injection now %s", faults)
        self._current = faults

    async def start(self) -> None:
        if self._watcher is not None:
            log.warning("fault injection ENABLED (%s=1), faults file %s", ENABLE_ENV, self.path)
            await self._watcher.start()

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()


def pick_dropped_jobs(job_ids: Sequence[str], fraction: float, seed: str) -> set[str]:
    """The jobs to drop: round(fraction * distinct jobs), chosen by hash of seed and id.

    Deterministic and independent of the order of ``job_ids``, so a retried request loses the
    same jobs and a test can predict them.
    """
    _check_fraction("drop_job_fraction", fraction)
    unique = list(dict.fromkeys(job_ids))
    count = math.floor(len(unique) * fraction + 0.5)
    ranked = sorted(unique, key=lambda job_id: (stable_unit(f"{seed}\0{job_id}"), job_id))
    return set(ranked[:count])


def should_fail(seed: str, error_rate: float) -> bool:
    """Whether the request keyed by ``seed`` (its request id) gets an injected error."""
    _check_fraction("error_rate", error_rate)
    return stable_unit(f"error\0{seed}") < error_rate
