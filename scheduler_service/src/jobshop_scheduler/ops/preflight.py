"""Host prerequisites before a deployment, each a PASS / WARN / FAIL with a reason.

Measured as the process sees them, container limits included: CPU cores are the fewest of the
affinity mask and the cgroup v2 quota, RAM the lesser of the physical memory and the cgroup
limit, so a pod on a 64-core node with ``limits.cpu: 2`` reports 2. Sizes are decimal GB.
Checks never change the machine: the log directory is probed with a temporary file that is
removed again. A database nobody configured is a warning (the service runs without one; only
ingestion needs it); a configured one that does not answer is a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobshop_scheduler.checklist import Check, failed, passed, warned
from jobshop_scheduler.data.database import DatabaseError, server_version
from jobshop_scheduler.data.settings import Settings
from jobshop_scheduler.domain.codec import ProblemFormatError, load_problem
from jobshop_scheduler.rl.model_store import ModelError, check_model
from jobshop_scheduler.service.keys import KeyFileError, KeyStore

GB = 1e9
MIN_PYTHON = (3, 11)
# The serving set (the scheduler image); torch and SB3 are the train extra, not a host's duty.
MODULES = (
    "numpy", "numba", "grpc", "grpc_health", "google.protobuf", "aiomysql", "prometheus_client",
    "tqdm",
)  # fmt: skip
SHOWN_VERSIONS = ("numpy", "numba", "grpc", "aiomysql")
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class PreflightOptions:
    disk_path: Path = Path(".")
    skip_db: bool = False


def _cgroup_cpus(root: Path = CGROUP) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def cpu_cores(root: Path = CGROUP) -> float:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    counts = [c for c in (affinity, os.cpu_count(), _cgroup_cpus(root)) if c]
    return float(min(counts)) if counts else 0.0


def memory_bytes(root: Path = CGROUP) -> int:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = (root / "memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def check_cpu(minimum: int, cores: float | None = None) -> Check:
    have = cpu_cores() if cores is None else cores
    text = f"{have:g} core(s) available, {minimum} required"
    return passed("cpu-cores", text) if have >= minimum else failed("cpu-cores", text)


def check_memory(minimum_gb: float, total: int | None = None) -> Check:
    have = (memory_bytes() if total is None else total) / GB
    text = f"{have:.1f} GB RAM, {minimum_gb:g} GB required"
    return passed("memory", text) if have >= minimum_gb else failed("memory", text)


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(path: Path, minimum_gb: float) -> Check:
    where = _existing(path)
    free = shutil.disk_usage(where).free / GB
    text = f"{free:.1f} GB free at {where}, {minimum_gb:g} GB required"
    return passed("disk", text) if free >= minimum_gb else failed("disk", text)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    need = ".".join(map(str, MIN_PYTHON))
    if sys.version_info < MIN_PYTHON:
        return failed("python", f"Python {version}, {need} or newer required")
    return passed("python", f"Python {version} ({sys.executable})")


def check_imports(modules: tuple[str, ...] = MODULES) -> Check:
    versions: dict[str, str] = {}
    missing: list[str] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a broken install raises anything, not just ImportError
            missing.append(f"{name} ({exc.__class__.__name__}: {exc})")
            continue
        versions[name] = str(getattr(module, "__version__", "?"))
    if missing:
        return failed("imports", "cannot import " + "; ".join(missing))
    shown = ", ".join(f"{n} {versions[n]}" for n in SHOWN_VERSIONS if n in versions)
    return passed("imports", f"{len(versions)} modules import ({shown})")


def check_database(settings: Settings, skip: bool) -> Check:
    if skip:
        return warned("database", "skipped (--skip-db)")
    if not settings.db_configured:
        return warned("database", "not configured (SCHEDULER_DB_*): ingest cannot run here")
    try:
        version = asyncio.run(server_version(settings))
    except DatabaseError as exc:
        return failed("database", str(exc))
    return passed("database", f"MariaDB {version} at {settings.db_address}")


def check_model_files(directory: Path) -> Check:
    try:
        card = check_model(directory)
    except ModelError as exc:
        return failed("model", str(exc))
    return passed("model", f"{directory}: version {card.version}, checksum matches its card")


def check_snapshot(path: Path) -> Check:
    if not path.is_file():
        return failed("snapshot", f"{path}: no such file (run schedctl ingest)")
    try:
        problem = load_problem(path)
    except (ProblemFormatError, OSError) as exc:
        return failed("snapshot", f"{path}: {exc} (schedctl verify-data for every rule)")
    return passed("snapshot", f"{path}: {len(problem.jobs)} jobs, header and checksum valid")


def check_log_dir(path: Path) -> Check:
    if not path.is_dir():
        return failed("log-dir", f"{path}: no such directory (mkdir -m 750 {path})")
    mode = path.stat().st_mode
    if mode & stat.S_IWOTH:
        return failed("log-dir", f"{path}: world-writable ({stat.filemode(mode)}); chmod o-w")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight-"):
            pass
    except OSError as exc:
        return failed("log-dir", f"{path}: not writable ({exc.strerror})")
    return passed("log-dir", f"{path}: writable, {stat.filemode(mode)}")


def check_api_keys(path: Path | None) -> Check:
    if path is None:
        return failed("api-keys", "no keys file configured (SCHEDULER_API_KEYS_FILE, --keys)")
    try:
        store = KeyStore.from_file(path)
    except KeyFileError as exc:
        return failed("api-keys", str(exc))
    if len(store) == 0:
        return failed("api-keys", f"{path}: no keys (schedctl keygen --keys-file {path})")
    return passed("api-keys", f"{path}: {len(store)} key(s)")


def run_preflight(settings: Settings, options: PreflightOptions) -> list[Check]:
    """Every check in order; one that crashes is reported as FAIL, never aborts the others."""
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("cpu-cores", lambda: check_cpu(settings.min_cpu_cores)),
        ("memory", lambda: check_memory(settings.min_ram_gb)),
        ("disk", lambda: check_disk(options.disk_path, settings.min_disk_gb)),
        ("python", check_python),
        ("imports", check_imports),
        ("database", lambda: check_database(settings, options.skip_db)),
        ("model", lambda: check_model_files(settings.model_dir)),
        ("snapshot", lambda: check_snapshot(settings.snapshot_path)),
        ("log-dir", lambda: check_log_dir(settings.log_dir)),
        ("api-keys", lambda: check_api_keys(settings.api_keys_file)),
    ]
    checks = []
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:  # a check that crashes is a finding, not a reason to stop
            checks.append(failed(name, f"the check itself failed: {exc!r}"))
    return checks
