"""Every setting of ingestion and the deployment checks, in one typed, frozen object.

Sources, strongest first: command-line flags (applied by the commands with ``replace``), the
process environment, a ``.env`` file, then the defaults below. The password comes from
``SCHEDULER_DB_PASSWORD_FILE`` (a mounted Secret) or ``SCHEDULER_DB_PASSWORD``, never both, and
is held in a ``Secret``. ``SPECS`` is the single list of settings: the loader, the
``.env.example`` and the table in docs/data.md all follow it (a test keeps them in step).

A misspelt key fails instead of being ignored: any unknown ``SCHEDULER_DB_*`` /
``SCHEDULER_PREFLIGHT_*`` name, and any ``.env`` key one typo away from a known one.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jobshop_scheduler.data import queries
from jobshop_scheduler.data.envfile import EnvFileError, read_env_file
from jobshop_scheduler.data.secret import Secret
from jobshop_scheduler.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MODEL_DIR

ENV_FILE_ENV = "SCHEDULER_ENV_FILE"
PASSWORD_ENV = "SCHEDULER_DB_PASSWORD"
PASSWORD_FILE_ENV = "SCHEDULER_DB_PASSWORD_FILE"
DEFAULT_SNAPSHOT = Path("data/real_production_snapshot.json")
DEFAULT_BACKUP_DIR = DEFAULT_MODEL_DIR.parent / "backups"
OWN_PREFIXES = ("SCHEDULER_DB_", "SCHEDULER_PREFLIGHT_")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it (never a password's value)."""


@dataclass(frozen=True)
class Settings:
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_user: str = "jobshop"
    db_name: str = "jobshop"
    db_password: Secret = field(default_factory=Secret)
    db_password_file: Path | None = None
    db_connect_timeout_s: float = 10.0
    db_fetch_size: int = 1000
    query_machines: str = queries.MACHINES
    query_jobs: str = queries.JOBS
    query_operations: str = queries.OPERATIONS
    query_alternatives: str = queries.ALTERNATIVES
    query_job_count: str = queries.JOB_COUNT
    snapshot_path: Path = DEFAULT_SNAPSHOT
    expected_jobs: int | None = None
    model_dir: Path = DEFAULT_MODEL_DIR
    backup_dir: Path = DEFAULT_BACKUP_DIR
    log_dir: Path = Path("logs")
    api_keys_file: Path | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    min_cpu_cores: int = 4
    min_ram_gb: float = 16.0
    min_disk_gb: float = 10.0
    configured: frozenset[str] = frozenset()  # names set in the environment or the .env file

    @property
    def queries(self) -> queries.Queries:
        return queries.Queries(
            self.query_machines,
            self.query_jobs,
            self.query_operations,
            self.query_alternatives,
            self.query_job_count,
        )

    @property
    def db_configured(self) -> bool:
        """Whether anyone pointed us at a database (preflight warns instead of failing if not)."""
        return any(s.env in self.configured for s in SPECS if s.field.startswith("db_"))

    @property
    def db_address(self) -> str:
        return f"{self.db_user}@{self.db_host}:{self.db_port}/{self.db_name}"


def _text(value: str) -> str:
    return value


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be an integer, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None
    if not number > 0:
        raise ValueError(f"must be positive, got {value!r}")
    return number


def _path(value: str) -> Path:
    if not value:
        raise ValueError("must not be empty")
    return Path(value).expanduser()


@dataclass(frozen=True)
class Spec:
    env: str
    field: str
    parse: Callable[[str], Any]
    meaning: str


SPECS: tuple[Spec, ...] = (
    Spec("SCHEDULER_DB_HOST", "db_host", _text, "MariaDB host name or address"),
    Spec("SCHEDULER_DB_PORT", "db_port", _integer(1), "MariaDB TCP port"),
    Spec("SCHEDULER_DB_USER", "db_user", _text, "database user (read access suffices)"),
    Spec("SCHEDULER_DB_NAME", "db_name", _text, "database (schema) name"),
    Spec(PASSWORD_ENV, "db_password", Secret, "the password itself; prefer the _FILE form"),
    Spec(PASSWORD_FILE_ENV, "db_password_file", _path, "file holding the password (one line)"),
    Spec("SCHEDULER_DB_CONNECT_TIMEOUT", "db_connect_timeout_s", _number, "connect timeout, s"),
    Spec("SCHEDULER_DB_FETCH_SIZE", "db_fetch_size", _integer(1), "rows per fetch while streaming"),
    Spec("SCHEDULER_DB_QUERY_MACHINES", "query_machines", _text, "SELECT returning: id"),
    Spec(
        "SCHEDULER_DB_QUERY_JOBS",
        "query_jobs",
        _text,
        "SELECT returning: id, release_time, due_date, priority",
    ),
    Spec(
        "SCHEDULER_DB_QUERY_OPERATIONS",
        "query_operations",
        _text,
        "SELECT returning: job_id, operation_id, seq",
    ),
    Spec(
        "SCHEDULER_DB_QUERY_ALTERNATIVES",
        "query_alternatives",
        _text,
        "SELECT returning: job_id, operation_id, machine_id, duration",
    ),
    Spec("SCHEDULER_DB_QUERY_JOB_COUNT", "query_job_count", _text, "SELECT returning one count"),
    Spec("SCHEDULER_SNAPSHOT", "snapshot_path", _path, "snapshot file ingest writes"),
    Spec("SCHEDULER_EXPECTED_JOBS", "expected_jobs", _integer(0), "job count the data must have"),
    Spec("SCHEDULER_MODEL_DIR", "model_dir", _path, "final_model.zip + model_card.json"),
    Spec("SCHEDULER_MODEL_BACKUP_DIR", "backup_dir", _path, "where backup-model copies go"),
    Spec("SCHEDULER_LOG_DIR", "log_dir", _path, "the service's log / audit directory"),
    Spec("SCHEDULER_API_KEYS_FILE", "api_keys_file", _path, "API keys file (as for serve)"),
    Spec("SCHEDULER_BATCH_SIZE", "batch_size", _integer(1), "jobs the policy sees at once"),
    Spec("SCHEDULER_PREFLIGHT_MIN_CORES", "min_cpu_cores", _integer(1), "preflight: CPU cores"),
    Spec("SCHEDULER_PREFLIGHT_MIN_RAM_GB", "min_ram_gb", _number, "preflight: RAM, GB"),
    Spec("SCHEDULER_PREFLIGHT_MIN_DISK_GB", "min_disk_gb", _number, "preflight: free disk, GB"),
)
KNOWN = frozenset({s.env for s in SPECS} | {ENV_FILE_ENV})


def _check_names(env_file: Mapping[str, str], environ: Mapping[str, str]) -> None:
    for name in sorted({*env_file, *environ}):
        if name in KNOWN:
            continue
        close = difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=0.85)
        ours = name.startswith(OWN_PREFIXES)
        if ours or (name in env_file and close):
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"unknown setting {name}{hint}")


def _password(values: Mapping[str, str]) -> tuple[Secret, Path | None]:
    if PASSWORD_ENV in values and PASSWORD_FILE_ENV in values:
        raise SettingsError(f"set {PASSWORD_ENV} or {PASSWORD_FILE_ENV}, not both")
    if PASSWORD_FILE_ENV not in values:
        return Secret(values.get(PASSWORD_ENV, "")), None
    path = _path(values[PASSWORD_FILE_ENV])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise SettingsError(f"{PASSWORD_FILE_ENV}: cannot read {path} ({reason})") from None
    return Secret(text.rstrip("\r\n")), path


def _env_file_path(environ: Mapping[str, str], env_file: Path | None) -> tuple[Path, bool]:
    """The .env file to read and whether it was asked for (then it must exist)."""
    if env_file is not None:
        return env_file, True
    if ENV_FILE_ENV in environ:
        return Path(environ[ENV_FILE_ENV]), True
    return Path(".env"), False


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Settings from ``environ`` (default: os.environ) over the .env file over the defaults."""
    env = dict(os.environ if environ is None else environ)
    path, required = _env_file_path(env, env_file)
    if required and not path.is_file():
        raise SettingsError(f"env file {path} does not exist")
    try:
        from_file = read_env_file(path)
    except EnvFileError as exc:
        raise SettingsError(str(exc)) from None
    _check_names(from_file, {k: v for k, v in env.items() if k.startswith("SCHEDULER_")})
    values = {**{k: v for k, v in from_file.items() if k in KNOWN}, **env}
    values = {k: v for k, v in values.items() if k in KNOWN}
    kwargs: dict[str, Any] = {}
    for spec in SPECS:
        if spec.env in values and spec.env not in (PASSWORD_ENV, PASSWORD_FILE_ENV):
            try:
                kwargs[spec.field] = spec.parse(values[spec.env])
            except ValueError as exc:
                raise SettingsError(f"{spec.env}: {exc}") from None
    kwargs["db_password"], kwargs["db_password_file"] = _password(values)
    return Settings(**kwargs, configured=frozenset(values))


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with the given fields replaced; ``None`` means "flag not given"."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})
