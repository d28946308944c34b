"""What a scheduler server is started with, checked before anything binds a port.

Every mistake an operator can make in a Deployment (a typo in the track, TLS cert without key,
no API keys and no explicit ``--no-auth``) fails here with one message naming the setting, not
later as a half-started pod. ``schedctl serve`` builds one of these from its flags; tests build
them directly and start servers in-process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobshop_scheduler.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL_DIR,
    DEFAULT_TIME_BUDGET_MS,
    MAX_TIME_BUDGET_MS,
)
from jobshop_scheduler.domain.validator import SizeLimits
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE, RULES
from jobshop_scheduler.planner import DEFAULT_POLICIES

TRACK_ENV = "SCHEDULER_TRACK"
KEYS_ENV = "SCHEDULER_API_KEYS_FILE"
DEFAULT_POLICY_ENV = "SCHEDULER_DEFAULT_POLICY"
TIME_BUDGET_ENV = "SCHEDULER_TIME_BUDGET_MS"
TRACKS = ("stable", "canary", "shadow")
DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9100
DEFAULT_MAX_JOBS = 2000
# operations x machines of a request (`problem_rules.validate_problem`): about 9 bytes each, so
# 20 million is 180 MB, and a 2000-job request of 50 operations may name 200 machines
DEFAULT_MAX_TABLE_CELLS = 20_000_000
# operations of a request: 2000 jobs of 100 (a 2000-job production-like request has 30 000);
# converting and checking one cost 3-4 us and up to 300 bytes (`problem_rules.SizeLimits`)
DEFAULT_MAX_OPERATIONS = 200_000
DEFAULT_GRACE_S = 10.0


class ConfigError(ValueError):
    """A server setting that cannot work; the message names it."""


def resolve_track(value: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``value``, else ``$SCHEDULER_TRACK``, else stable; anything but the three tracks fails."""
    env = os.environ if environ is None else environ
    track = value if value is not None else env.get(TRACK_ENV, "stable")
    if track not in TRACKS:
        source = "--track" if value is not None else f"${TRACK_ENV}"
        raise ConfigError(f"{source} must be one of {', '.join(TRACKS)}, got {track!r}")
    return track


def _check_port(name: str, port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be 0-65535 (0: any free port), got {port}")


@dataclass(frozen=True)
class ServerConfig:
    """One scheduler server. ``port=0`` / ``metrics_port=0`` bind any free port (tests)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    metrics_port: int | None = DEFAULT_METRICS_PORT  # None: no metrics endpoint
    metrics_host: str | None = None  # None: same as host
    model_dir: Path = DEFAULT_MODEL_DIR
    track: str = "stable"
    keys_path: Path | None = None
    no_auth: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    audit_dir: Path | None = None
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_backups: int = 5
    batch_size: int = DEFAULT_BATCH_SIZE
    max_jobs: int = DEFAULT_MAX_JOBS
    max_operations: int = DEFAULT_MAX_OPERATIONS
    max_table_cells: int = DEFAULT_MAX_TABLE_CELLS
    legacy_rule: str = LEGACY_RULE
    default_policy: str = "ppo"  # what a request with policy AUTO gets
    time_budget_ms: int = DEFAULT_TIME_BUDGET_MS  # search budget of requests that do not say
    max_time_budget_ms: int = MAX_TIME_BUDGET_MS  # requests asking for more are refused
    mirror_config: Path | None = None
    faults_file: Path | None = None
    grace_s: float = DEFAULT_GRACE_S
    workers: int = 2  # planner threads: requests are CPU-bound
    keys_reload_s: float | None = 10.0

    def __post_init__(self) -> None:
        resolve_track(self.track)
        _check_port("port", self.port)
        _check_port("metrics port", self.metrics_port)
        if self.keys_path is None and not self.no_auth:
            raise ConfigError(
                f"no API keys: give --keys FILE (or ${KEYS_ENV}), or --no-auth to serve "
                "without authentication"
            )
        if self.keys_path is not None and self.no_auth:
            raise ConfigError("--keys and --no-auth contradict each other; choose one")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        self._check_numbers()

    @property
    def limits(self) -> SizeLimits:
        """The request sizes this server refuses beyond (`problem_rules.SizeLimits`)."""
        return SizeLimits(self.max_jobs, self.max_operations, self.max_table_cells)

    def _check_numbers(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        for name, limit in (
            ("max jobs", self.max_jobs),
            ("max operations", self.max_operations),
            ("max table cells", self.max_table_cells),
        ):
            if limit < 1:
                raise ConfigError(f"{name} must be at least 1, got {limit}")
        if self.legacy_rule not in RULES:
            raise ConfigError(f"legacy rule must be one of {', '.join(RULES)}")
        if self.default_policy not in DEFAULT_POLICIES:
            raise ConfigError(
                f"default policy must be one of {', '.join(DEFAULT_POLICIES)}, "
                f"got {self.default_policy!r}"
            )
        if not 0 <= self.time_budget_ms <= self.max_time_budget_ms:
            raise ConfigError(
                f"time budget must be 0-{self.max_time_budget_ms} ms (the maximum), "
                f"got {self.time_budget_ms}"
            )
        if self.grace_s < 0:
            raise ConfigError(f"grace period must not be negative, got {self.grace_s}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.audit_max_bytes < 1 or self.audit_backups < 1:
            raise ConfigError("audit rotation size and backup count must be positive")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None
