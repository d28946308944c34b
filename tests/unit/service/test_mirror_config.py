"""Mirror and fault configs: parsing with named fields, sampling, queue overflow, the env gate."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from jobshop_scheduler.api import pb
from jobshop_scheduler.service.faults import (
    ENABLE_ENV,
    FaultConfig,
    FaultConfigError,
    FaultInjector,
    load_faults,
    parse_faults,
    pick_dropped_jobs,
    should_fail,
)
from jobshop_scheduler.service.mirror import Mirror
from jobshop_scheduler.service.mirror_config import (
    MirrorConfig,
    MirrorConfigError,
    load_mirror_config,
    parse_mirror_config,
    read_api_key,
)
from jobshop_scheduler.service.sampling import sampled
from jobshop_scheduler.service.watched_file import ConfigWatcher
from testbed.process import free_port

pytestmark = pytest.mark.unit

IDS = [f"req-{i:05d}" for i in range(1000)]
ENABLED = {ENABLE_ENV: "1"}


def write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def counts(registry: CollectorRegistry, track: str = "stable") -> dict[str, float]:
    return {
        outcome: registry.get_sample_value(
            "scheduler_mirror_requests_total", {"track": track, "outcome": outcome}
        )
        or 0.0
        for outcome in ("sent", "failed", "dropped")
    }


# --- mirror config parsing -----------------------------------------------------------------


def test_full_config_parses(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mirror.json",
        {
            "target": "shadow.ns.svc:50051",
            "percent": 12.5,
            "timeout_ms": 500,
            "tls_ca_file": "/etc/ca.crt",
            "api_key_file": "/etc/key",
        },
    )
    assert load_mirror_config(path) == MirrorConfig(
        "shadow.ns.svc:50051", 12.5, 500, Path("/etc/ca.crt"), Path("/etc/key")
    )


def test_minimal_config_takes_defaults() -> None:
    config = parse_mirror_config('{"target": "[::1]:7000", "percent": 100}')
    assert config == MirrorConfig("[::1]:7000", 100, 2000, None, None)


@pytest.mark.parametrize("text", ["", "  \n", '{"percent": 0}', '{"percent": 0, "target": "a:1"}'])
def test_off(text: str) -> None:
    assert parse_mirror_config(text) is None


def test_missing_file_is_off(tmp_path: Path) -> None:
    assert load_mirror_config(tmp_path / "absent.json") is None


def test_directory_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(MirrorConfigError, match="cannot read") as err:
        load_mirror_config(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"percent": 10}, "target"),
        ({"target": 5, "percent": 10}, "target"),
        ({"target": "shadow", "percent": 10}, "target"),
        ({"target": ":50051", "percent": 10}, "target"),
        ({"target": "shadow:http", "percent": 10}, "target"),
        ({"target": "shadow:0", "percent": 10}, "target"),
        ({"target": "shadow:70000", "percent": 10}, "target"),
        ({"target": "a:1"}, "percent"),
        ({"target": "a:1", "percent": "10"}, "percent"),
        ({"target": "a:1", "percent": True}, "percent"),
        ({"target": "a:1", "percent": -1}, "percent"),
        ({"target": "a:1", "percent": 100.5}, "percent"),
        ({"target": "a:1", "percent": 10, "timeout_ms": 0}, "timeout_ms"),
        ({"target": "a:1", "percent": 10, "timeout_ms": 1.5}, "timeout_ms"),
        ({"target": "a:1", "percent": 10, "timeout_ms": True}, "timeout_ms"),
        ({"target": "a:1", "percent": 10, "timeout_ms": 10**9}, "timeout_ms"),
        ({"target": "a:1", "percent": 10, "tls_ca_file": ""}, "tls_ca_file"),
        ({"target": "a:1", "percent": 10, "tls_ca_file": 3}, "tls_ca_file"),
        ({"target": "a:1", "percent": 10, "api_key_file": " "}, "api_key_file"),
        ({"target": "a:1", "percent": 10, "api_key_file": ["k"]}, "api_key_file"),
        ({"target": "a:1", "percent": 10, "precent": 5}, "precent"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, data: dict[str, Any], field: str) -> None:
    path = write(tmp_path / "mirror.json", data)
    with pytest.raises(MirrorConfigError) as err:
        load_mirror_config(path)
    assert err.value.field == field
    assert f"'{field}'" in str(err.value)
    assert str(path) in str(err.value)


def test_nan_percent_is_rejected() -> None:
    with pytest.raises(MirrorConfigError) as err:
        parse_mirror_config('{"target": "a:1", "percent": NaN}')
    assert err.value.field == "percent"


@pytest.mark.parametrize(("text", "match"), [("{", "not valid JSON"), ("[1]", "JSON object")])
def test_malformed_document(text: str, match: str) -> None:
    with pytest.raises(MirrorConfigError, match=match):
        parse_mirror_config(text)


def test_api_key_errors_never_repeat_the_file(tmp_path: Path) -> None:
    secret = "0123abcd.not-a-real-key-but-treated-as-one-in-this-test"
    assert read_api_key(write(tmp_path / "key", f"  {secret}\n")) == secret
    for name, content in [("two", f"{secret} {secret}"), ("empty", "\n")]:
        with pytest.raises(MirrorConfigError) as err:
            read_api_key(write(tmp_path / name, content))
        assert err.value.field == "api_key_file"
        assert secret not in str(err.value)
    with pytest.raises(MirrorConfigError, match="missing"):
        read_api_key(tmp_path / "absent")


# --- sampling ------------------------------------------------------------------------------


def test_sampling_by_request_id_is_deterministic() -> None:
    assert not any(sampled(i, 0) for i in IDS)
    assert all(sampled(i, 100) for i in IDS)
    half = [i for i in IDS if sampled(i, 50)]
    assert 450 <= len(half) <= 550
    assert half == [i for i in IDS if sampled(i, 50)]
    # Raising the percent only adds ids: one sampled at 10% is sampled at 50% too.
    assert {i for i in IDS if sampled(i, 10)} <= set(half)


def mirror_config(tmp_path: Path, percent: float, port: int | None = None) -> Path:
    target = f"127.0.0.1:{port or free_port()}"  # nothing listens: nothing here sends
    return write(tmp_path / "mirror.json", {"target": target, "percent": percent})


async def test_offer_samples_like_the_hash_and_counts_ids_less_requests(tmp_path: Path) -> None:
    mirror = Mirror(mirror_config(tmp_path, 50), CollectorRegistry(), "stable", queue_size=5000)
    await mirror.start()
    try:
        first = [mirror.offer(pb.ScheduleRequest(request_id=i)) for i in IDS]
        again = [mirror.offer(pb.ScheduleRequest(request_id=i)) for i in IDS]
        assert first == again == [sampled(i, 50) for i in IDS]
        # No request id: a running counter takes exactly half.
        assert sum(mirror.offer(pb.ScheduleRequest()) for _ in range(1000)) == 500
    finally:
        await mirror.stop()


async def test_offer_at_0_and_100_percent(tmp_path: Path) -> None:
    path = mirror_config(tmp_path, 100)
    mirror = Mirror(path, CollectorRegistry(), "stable", queue_size=5000)
    await mirror.start()
    try:
        assert all(mirror.offer(pb.ScheduleRequest(request_id=i)) for i in IDS)
        write(path, {"percent": 0})
        mirror.reload()
        assert mirror.config is None
        assert not any(mirror.offer(pb.ScheduleRequest(request_id=i)) for i in IDS)
    finally:
        await mirror.stop()


async def test_offer_is_false_when_off_or_stopped(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    request = pb.ScheduleRequest(request_id="r1")
    no_config = Mirror(None, registry, "stable")
    await no_config.start()
    assert not no_config.offer(request)
    await no_config.stop()
    mirror = Mirror(mirror_config(tmp_path, 100), CollectorRegistry(), "stable")
    assert not mirror.offer(request)  # not started
    await mirror.start()
    assert mirror.offer(request)
    assert not mirror.offer(None)  # nonsense in, False out, no raise
    await mirror.stop()
    assert not mirror.offer(request)


async def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    mirror = Mirror(mirror_config(tmp_path, 100), registry, "stable", queue_size=3, workers=1)
    await mirror.start()
    try:
        # offer is synchronous: the worker cannot take anything off the queue in between.
        started = time.perf_counter()
        accepted = [mirror.offer(pb.ScheduleRequest(request_id=f"r{i}")) for i in range(10)]
        assert time.perf_counter() - started < 1.0  # sanity only, not a performance claim
        assert accepted == [True] * 3 + [False] * 7
        assert counts(registry)["dropped"] == 7
        depth = registry.get_sample_value("scheduler_mirror_queue_depth", {"track": "stable"})
        assert depth == 3
    finally:
        await mirror.stop()
    assert registry.get_sample_value("scheduler_mirror_queue_depth", {"track": "stable"}) == 0


async def test_bad_config_keeps_the_previous_one_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = mirror_config(tmp_path, 100)
    mirror = Mirror(path, CollectorRegistry(), "stable", poll_interval_s=60)
    await mirror.start()
    try:
        before = mirror.config
        assert before is not None
        write(path, {"target": before.target, "percent": 150})
        with caplog.at_level(logging.WARNING, logger="jobshop_scheduler.service.mirror"):
            mirror.reload()
        assert mirror.config == before
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "'percent'" in warnings[0].getMessage()
    finally:
        await mirror.stop()


async def test_missing_api_key_file_is_rejected_then_picked_up_when_it_appears(
    tmp_path: Path,
) -> None:
    key = tmp_path / "key"
    path = write(
        tmp_path / "mirror.json",
        {"target": f"127.0.0.1:{free_port()}", "percent": 100, "api_key_file": str(key)},
    )
    mirror = Mirror(path, CollectorRegistry(), "stable", poll_interval_s=0.05)
    await mirror.start()
    try:
        assert mirror.config is None  # the key file is named but missing: not usable yet
        write(key, "0123abcd.secret\n")
        await wait_for(lambda: mirror.config is not None)
    finally:
        await mirror.stop()


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="track"):
        Mirror(None, CollectorRegistry(), "")
    with pytest.raises(ValueError, match="queue_size"):
        Mirror(None, CollectorRegistry(), "stable", queue_size=0)


# --- the watcher ---------------------------------------------------------------------------


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_watcher_sees_content_changes_behind_equal_size_and_mtime(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", "aaaa")
    calls: list[str] = []
    watcher = ConfigWatcher(path, on_change=lambda: calls.append(path.read_text()))
    assert watcher.check()  # the first look always reports
    assert not watcher.check()
    stat = path.stat()
    write(path, "bbbb")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert watcher.check()
    assert calls == ["aaaa", "bbbb"]


def test_watcher_follows_configmap_symlink_swaps(tmp_path: Path) -> None:
    # A ConfigMap volume: file -> ..data/file, ..data -> ..<timestamp>, swapped atomically.
    for version, text in [("..v1", "one"), ("..v2", "two")]:
        (tmp_path / version).mkdir()
        write(tmp_path / version / "mirror.json", text)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "mirror.json").symlink_to("..data/mirror.json")
    calls: list[str] = []
    path = tmp_path / "mirror.json"
    watcher = ConfigWatcher(path, on_change=lambda: calls.append(path.read_text()))
    watcher.check()
    (tmp_path / "..tmp").symlink_to("..v2")
    (tmp_path / "..tmp").replace(tmp_path / "..data")
    assert watcher.check()
    assert calls == ["one", "two"]


def test_watcher_survives_a_failing_callback(tmp_path: Path) -> None:
    def boom() -> None:
        raise RuntimeError("callback bug")

    watcher = ConfigWatcher(write(tmp_path / "c", "x"), on_change=boom)
    assert watcher.check()
    assert not watcher.check()


async def test_watcher_task_polls_and_stops(tmp_path: Path) -> None:
    path = write(tmp_path / "c", "1")
    calls: list[str] = []
    watcher = ConfigWatcher(path, 0.02, on_change=lambda: calls.append("x"))
    await watcher.start()
    assert calls == ["x"]
    write(path, "2")
    await wait_for(lambda: len(calls) == 2)
    await watcher.stop()
    write(path, "3")
    await asyncio.sleep(0.1)
    assert len(calls) == 2


# --- faults --------------------------------------------------------------------------------


def test_faults_parse() -> None:
    text = '{"latency_ms": 250, "drop_job_fraction": 0.25, "error_rate": 1}'
    assert parse_faults(text) == FaultConfig(250, 0.25, 1.0)
    assert parse_faults("") == FaultConfig()
    assert not FaultConfig().active
    assert FaultConfig(error_rate=0.1).active


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": 1.5}, "latency_ms"),
        ({"latency_ms": 10**6}, "latency_ms"),
        ({"drop_job_fraction": 1.1}, "drop_job_fraction"),
        ({"drop_job_fraction": "0.5"}, "drop_job_fraction"),
        ({"error_rate": -0.1}, "error_rate"),
        ({"error_rate": False}, "error_rate"),
        ({"eror_rate": 0.1}, "eror_rate"),
    ],
)
def test_bad_fault_field_is_named(tmp_path: Path, data: dict[str, Any], field: str) -> None:
    path = write(tmp_path / "faults.json", data)
    with pytest.raises(FaultConfigError) as err:
        load_faults(path, ENABLED)
    assert err.value.field == field
    assert f"'{field}'" in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("value", [None, "0", "true", "yes", " 1"])
def test_faults_need_the_env_var(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str | None
) -> None:
    path = write(tmp_path / "faults.json", "this is not even JSON")
    environ = {} if value is None else {ENABLE_ENV: value}
    with caplog.at_level(logging.DEBUG):
        assert load_faults(path, environ) is None
        injector = FaultInjector(path, environ=environ)
        injector.reload()
        assert injector.current() is None
    assert caplog.records == []


def test_faults_with_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "faults.json"
    assert load_faults(path, ENABLED) == FaultConfig()  # no file yet: no faults
    write(path, {"latency_ms": 5})
    assert load_faults(path, ENABLED) == FaultConfig(latency_ms=5)
    monkeypatch.setenv(ENABLE_ENV, "1")
    assert load_faults(path) == FaultConfig(latency_ms=5)
    monkeypatch.delenv(ENABLE_ENV)
    assert load_faults(path) is None


async def test_fault_injector_flips_at_runtime(tmp_path: Path) -> None:
    path = write(tmp_path / "faults.json", {"error_rate": 0.5})
    injector = FaultInjector(path, interval_s=0.02, environ=ENABLED)
    await injector.start()
    try:
        assert injector.current() == FaultConfig(error_rate=0.5)
        write(path, {"latency_ms": 10})
        await wait_for(lambda: injector.current() == FaultConfig(latency_ms=10))
        write(path, {"latency_ms": "slow"})  # rejected: the previous faults stay
        await asyncio.sleep(0.1)
        assert injector.current() == FaultConfig(latency_ms=10)
        path.unlink()
        await wait_for(lambda: injector.current() == FaultConfig())
    finally:
        await injector.stop()


def test_pick_dropped_jobs_is_deterministic_and_exact() -> None:
    jobs = [f"J{i}" for i in range(200)]
    picked = pick_dropped_jobs(jobs, 0.1, "req-1")
    assert len(picked) == 20
    assert picked <= set(jobs)
    assert pick_dropped_jobs(list(reversed(jobs)), 0.1, "req-1") == picked
    assert pick_dropped_jobs(jobs, 0.1, "req-2") != picked
    assert pick_dropped_jobs(jobs, 0.0, "s") == set()
    assert pick_dropped_jobs(jobs, 1.0, "s") == set(jobs)
    assert len(pick_dropped_jobs(["a", "b", "c"], 0.5, "s")) == 2  # 1.5 rounds half up
    assert len(pick_dropped_jobs(["a", "a", "b"], 0.5, "s")) == 1  # distinct jobs count
    assert pick_dropped_jobs([], 0.5, "s") == set()
    with pytest.raises(FaultConfigError, match="drop_job_fraction"):
        pick_dropped_jobs(jobs, 1.5, "s")


def test_should_fail_is_deterministic_and_near_the_rate() -> None:
    hits = [should_fail(i, 0.2) for i in IDS]
    assert hits == [should_fail(i, 0.2) for i in IDS]
    assert 150 <= sum(hits) <= 250
    assert not any(should_fail(i, 0.0) for i in IDS)
    assert all(should_fail(i, 1.0) for i in IDS)
