"""A shadow-track server with test fault injection switched on by its env gate."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import pytest

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.domain.model import Assignment, Schedule
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.service.convert import problem_to_pb
from jobshop_scheduler.service.faults import ENABLE_ENV
from jobshop_scheduler.service.metrics import SchedulerMetrics

from .conftest import TRACK, ServerFactory, ServerThread, base_config

pytestmark = pytest.mark.grpc


@dataclass
class Faulty:
    server: ServerThread
    faults_file: Path


@pytest.fixture(scope="module")
def faulty(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, server_thread: ServerFactory
) -> Iterator[Faulty]:
    faults = tmp_path_factory.mktemp("faults") / "faults.json"
    faults.write_text(json.dumps({"drop_job_fraction": 0.5, "latency_ms": 50}))
    config = base_config(tiny_model_dir, track="shadow", faults_file=faults)
    with server_thread(config, environ={ENABLE_ENV: "1"}) as server:
        yield Faulty(server, faults)


def schedule(address: str, request: pb.ScheduleRequest) -> pb.ScheduleResponse:
    with grpc.insecure_channel(address) as channel:
        response: pb.ScheduleResponse = pb_grpc.SchedulerStub(channel).Schedule(request, timeout=30)
    return response


def test_dropped_jobs_lower_the_completion_rate(
    faulty: Faulty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobshop_scheduler.service.servicer")
    problem = production_like(20, seed=5)
    response = schedule(faulty.server.address, problem_to_pb(problem))
    assert response.completion_rate == 0.5
    assert len(response.unscheduled) == 10
    assert all("not scheduled" in u.reason for u in response.unscheduled)
    assert response.latency_ms >= 50
    dropped = {u.job_id for u in response.unscheduled}
    assert not any(a.job_id in dropped for a in response.assignments)
    schedule_ = Schedule(
        tuple(
            Assignment(a.job_id, a.operation_id, a.machine_id, a.start, a.end)
            for a in response.assignments
        )
    )
    report = validate(problem, schedule_)
    assert {v.kind for v in report.violations} == {"missing"}  # incomplete, never invalid
    text = faulty.server.running.metrics.exposition().decode()
    assert 'scheduler_jobs_requested_total{track="shadow"} 20.0' in text
    assert 'scheduler_jobs_scheduled_total{track="shadow"} 10.0' in text
    shadow_lines = [r for r in caplog.records if r.getMessage() == "shadow answer"]
    assert shadow_lines, [r.getMessage() for r in caplog.records]
    fields = getattr(shadow_lines[-1], "fields", {})
    assert fields["shadow"] is True and fields["track"] == "shadow"


def test_error_rate_fails_calls_once_the_file_says_so(faulty: Faulty) -> None:
    faulty.faults_file.write_text(json.dumps({"error_rate": 1.0}))
    request = problem_to_pb(production_like(5, seed=1))
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                schedule(faulty.server.address, request)
            except grpc.RpcError as exc:
                failed = cast(grpc.Call, exc)
                assert failed.code() == grpc.StatusCode.INTERNAL
                assert "injected fault" in str(failed.details())
                return
            time.sleep(0.1)  # the injector re-reads the file every half second
        pytest.fail("the error fault never took effect")
    finally:
        faulty.faults_file.write_text("{}")


def test_a_dead_shadow_changes_nothing_for_the_client(
    tmp_path: Path, tiny_model_dir: Path, server_thread: ServerFactory
) -> None:
    """Mirroring to a port nobody listens on: same answers as without mirroring, all OK."""
    dead = tmp_path / "mirror.json"
    dead.write_text(json.dumps({"target": "127.0.0.1:9", "percent": 100, "timeout_ms": 200}))
    request = problem_to_pb(production_like(30, seed=3))
    with server_thread(base_config(tiny_model_dir)) as plain:
        expected = schedule(plain.address, request)
    with server_thread(base_config(tiny_model_dir, mirror_config=dead)) as mirrored:
        answers = [schedule(mirrored.address, request) for _ in range(5)]
        metrics = mirrored.running.metrics
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _mirror_failures(metrics) < 5:
            time.sleep(0.05)
        assert _mirror_failures(metrics) == 5  # every copy was tried and counted, none crashed
    for answer in answers:
        assert list(answer.assignments) == list(expected.assignments)
        assert answer.makespan == expected.makespan and answer.completion_rate == 1.0


def _mirror_failures(metrics: SchedulerMetrics) -> float:
    value = metrics.registry.get_sample_value(
        "scheduler_mirror_requests_total", {"track": TRACK, "outcome": "failed"}
    )
    return value or 0.0
