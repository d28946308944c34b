"""preflight on this machine (2 cores: a FAIL row, not a crash) and each check's verdicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobshop_scheduler.checklist import Status
from jobshop_scheduler.cli import main
from jobshop_scheduler.data.settings import Settings
from jobshop_scheduler.domain.codec import dump_snapshot
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.ops import preflight
from jobshop_scheduler.service.keys import add_key

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_settings")]

NAMES = ["cpu-cores", "memory", "disk", "python", "imports", "database", "model", "snapshot",
         "log-dir", "api-keys"]  # fmt: skip


def test_preflight_json_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["preflight", "--json"])
    doc = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in doc["checks"]}
    assert list(checks) == NAMES
    assert all(c["status"] in ("PASS", "WARN", "FAIL") and c["message"] for c in checks.values())
    cores = preflight.cpu_cores()
    assert checks["cpu-cores"]["status"] == ("FAIL" if cores < 4 else "PASS")
    assert f"{cores:g} core(s) available, 4 required" == checks["cpu-cores"]["message"]
    assert checks["python"]["status"] == checks["imports"]["status"] == "PASS"
    assert checks["database"]["status"] == "WARN"  # nothing configured in this clean directory
    assert checks["snapshot"]["status"] == "FAIL"  # no ingest ran here
    assert doc["ok"] is (code == 0)
    assert code == 1


def test_prepared_host_passes_with_lenient_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o750)
    keys = tmp_path / "keys"
    add_key(keys, "preflight test")
    (tmp_path / "data").mkdir()
    dump_snapshot(production_like(5, seed=1), tmp_path / "data" / "real_production_snapshot.json")
    code = main(["preflight", "--min-cores", "1", "--min-ram-gb", "0.1", "--min-disk-gb",
                 "0.001", "--keys", str(keys), "--skip-db"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "database   WARN    skipped (--skip-db)" in out
    assert out.rstrip().splitlines()[-1] == "preflight: PASS (9 pass, 1 warn)"


def test_log_dir_verdicts(tmp_path: Path) -> None:
    assert preflight.check_log_dir(tmp_path / "none").status is Status.FAIL
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    check = preflight.check_log_dir(open_dir)
    assert check.status is Status.FAIL and "world-writable" in check.message
    open_dir.chmod(0o750)
    assert preflight.check_log_dir(open_dir).status is Status.PASS
    assert not list(open_dir.iterdir())  # the probe file is gone again


def test_api_key_verdicts(tmp_path: Path) -> None:
    assert "no keys file configured" in preflight.check_api_keys(None).message
    empty = tmp_path / "empty"
    empty.write_text("# no keys yet\n")
    assert "no keys" in preflight.check_api_keys(empty).message
    bad = tmp_path / "bad"
    bad.write_text("not a key line\n")
    assert preflight.check_api_keys(bad).status is Status.FAIL
    assert preflight.check_api_keys(tmp_path / "missing").status is Status.FAIL


def test_thresholds_and_cgroup_limits(tmp_path: Path) -> None:
    assert preflight.check_cpu(4, cores=2).status is Status.FAIL
    assert preflight.check_cpu(4, cores=4).status is Status.PASS
    assert preflight.check_memory(16, total=15_000_000_000).status is Status.FAIL
    assert preflight.check_memory(16, total=17_000_000_000).status is Status.PASS
    assert preflight.check_disk(tmp_path / "not" / "yet", 10**9).status is Status.FAIL
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text("2000000000\n")
    assert preflight.cpu_cores(tmp_path) == min(1.5, len(os.sched_getaffinity(0)))
    assert preflight.memory_bytes(tmp_path) == 2_000_000_000
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert preflight.cpu_cores(tmp_path) == len(os.sched_getaffinity(0))


def test_missing_module_and_a_crashing_check_are_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check = preflight.check_imports(("numpy", "no_such_module_xyz"))
    assert check.status is Status.FAIL and "no_such_module_xyz" in check.message

    def boom(_: float) -> float:
        raise RuntimeError("cgroup unreadable")

    monkeypatch.setattr(preflight, "check_memory", boom)
    settings = Settings(min_cpu_cores=1)
    checks = preflight.run_preflight(settings, preflight.PreflightOptions(skip_db=True))
    (memory,) = [c for c in checks if c.name == "memory"]
    assert memory.status is Status.FAIL and "cgroup unreadable" in memory.message
    assert len(checks) == len(NAMES)
