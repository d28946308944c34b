"""What the server tells the outside: the metric contract over plain HTTP and the audit trail."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from pathlib import Path

import grpc
import pytest

from jobshop_scheduler.api import pb_grpc
from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.service.audit import FILE_NAME
from jobshop_scheduler.service.convert import problem_to_pb

from .conftest import CONTRACT, TRACK, MainServer

pytestmark = pytest.mark.grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "requests" / "small.json"


Samples = dict[tuple[str, str], float]


def scrape(url: str) -> Samples:
    """(series name, label text) -> value, from the text exposition format."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if match:
            samples[(match[1], match[2])] = float(match[3])
    return samples


def value(samples: Samples, name: str, *labels: str) -> float:
    return sum(
        v for (n, text), v in samples.items() if n == name and all(x in text for x in labels)
    )


def send(main_server: MainServer, metadata: tuple[tuple[str, str], ...], jobs: int = 8) -> None:
    with grpc.insecure_channel(main_server.address) as channel:
        stub = pb_grpc.SchedulerStub(channel)
        stub.Schedule(
            problem_to_pb(production_like(jobs, seed=jobs)), metadata=metadata, timeout=30
        )


def test_metrics_endpoint_serves_the_contract_with_the_track(main_server: MainServer) -> None:
    before = scrape(main_server.metrics_url)
    send(main_server, main_server.auth)
    with pytest.raises(grpc.RpcError):
        send(main_server, ())  # UNAUTHENTICATED: counted, even though no handler ran
    with pytest.raises(grpc.RpcError):
        send(main_server, main_server.auth, jobs=400)  # INVALID_ARGUMENT: over max_jobs
    codes = ("OK", "UNAUTHENTICATED", "INVALID_ARGUMENT")

    def counted(samples: Samples, code: str) -> float:
        return value(samples, "scheduler_requests_total", f'code="{code}"')

    after = scrape(main_server.metrics_url)  # each call is counted before its client hears
    track = f'track="{TRACK}"'
    for name in CONTRACT:
        assert any(n == name and track in labels for n, labels in after), name
    assert all(track in labels for n, labels in after if n.startswith("scheduler_")), "track"
    for code in codes:
        assert counted(after, code) == counted(before, code) + 1, code
    for name in ("scheduler_jobs_requested_total", "scheduler_jobs_scheduled_total"):
        assert value(after, name) == value(before, name) + 8, name
    assert value(after, "scheduler_makespan_ratio_count") == (
        value(before, "scheduler_makespan_ratio_count") + 1
    )
    assert value(after, "scheduler_model_info", 'version="test-tiny-1"') == 1
    assert value(after, "scheduler_fallback_total", 'reason="no_model"') == 0  # preset at zero
    assert any(n == "scheduler_mirror_requests_total" for n, _ in after)  # one shared registry


def test_every_call_is_counted_before_its_client_hears_the_outcome(
    main_server: MainServer,
) -> None:
    """A dashboard or a rollout gate that scrapes right after an error sees it counted.

    grpc's ``context.abort`` sends the status at once, before the interceptor that counts the
    call has run; the server sets the status instead, so it leaves after every record. Calls
    alternate so that each scrape also checks that no earlier call was counted late.
    """
    url = main_server.metrics_url

    def counted(code: str) -> float:
        return value(scrape(url), "scheduler_requests_total", f'code="{code}"')

    start = {code: counted(code) for code in ("OK", "UNAUTHENTICATED", "INVALID_ARGUMENT")}
    for round_ in range(1, 11):
        send(main_server, main_server.auth)
        assert counted("OK") == start["OK"] + round_
        with pytest.raises(grpc.RpcError):
            send(main_server, ())
        assert counted("UNAUTHENTICATED") == start["UNAUTHENTICATED"] + round_
        with pytest.raises(grpc.RpcError):
            send(main_server, main_server.auth, jobs=400)
        assert counted("INVALID_ARGUMENT") == start["INVALID_ARGUMENT"] + round_


def test_large_requests_count_batch_events(main_server: MainServer) -> None:
    before = scrape(main_server.metrics_url)
    send(main_server, main_server.auth, jobs=250)  # 170 + 80: two batches
    after = scrape(main_server.metrics_url)
    assert value(after, "scheduler_batches_total") == value(before, "scheduler_batches_total") + 2


def test_a_greedy_pass_cut_by_its_budget_is_counted_and_reported(
    main_server: MainServer,
) -> None:
    before = scrape(main_server.metrics_url)
    problem = production_like(250, seed=3)
    with grpc.insecure_channel(main_server.address) as channel:
        response = pb_grpc.SchedulerStub(channel).Schedule(
            problem_to_pb(problem, "ppo", time_budget_ms=1), metadata=main_server.auth, timeout=30
        )
    assert 0 < response.greedy_cut_operations <= problem.operation_count
    assert response.policy_used == "ppo" and response.completion_rate == 1.0
    after = scrape(main_server.metrics_url)
    assert value(after, "scheduler_greedy_cut_total") == (
        value(before, "scheduler_greedy_cut_total") + 1
    )
    assert value(after, "scheduler_fallback_total") == value(before, "scheduler_fallback_total")


def read_audit(directory: Path) -> list[dict[str, object]]:
    lines = []
    for path in sorted(directory.glob(f"{FILE_NAME}*")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_audit_trail_records_calls_by_key_id_rotates_and_holds_no_key(
    main_server: MainServer,
) -> None:
    problem = load_problem(EXAMPLE)
    request = problem_to_pb(problem)
    with grpc.insecure_channel(main_server.address) as channel:
        stub = pb_grpc.SchedulerStub(channel)
        for i in range(25):
            request.request_id = f"audit-{i}"
            stub.Schedule(request, metadata=main_server.auth, timeout=30)
        request.jobs[0].operations[0].alternatives[0].duration = -1
        request.request_id = "audit-invalid"
        with pytest.raises(grpc.RpcError):
            stub.Schedule(request, metadata=main_server.auth, timeout=30)
    assert (main_server.audit_dir / f"{FILE_NAME}.1").is_file(), "the trail never rotated"
    raw = "".join(p.read_text() for p in main_server.audit_dir.glob(f"{FILE_NAME}*"))
    key_id, secret = main_server.key.split(".")
    assert secret not in raw and main_server.key not in raw
    lines = {line["request_id"]: line for line in read_audit(main_server.audit_dir)}
    last = lines["audit-24"]
    assert last["client"] == key_id and last["track"] == TRACK and last["status"] == "OK"
    assert last["jobs"] == len(problem.jobs) and last["makespan"]
    refused = lines["audit-invalid"]
    assert refused["status"] == "INVALID_ARGUMENT"
    assert "jobs[0].operations[0].alternatives[0].duration" in str(refused["detail"])


def test_a_payload_that_does_not_decode_is_refused_counted_and_audited(
    main_server: MainServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are no ScheduleRequest: INVALID_ARGUMENT naming the request, like any bad
    field, not grpc's UNKNOWN with a Python exception class and a traceback in the log."""
    url = main_server.metrics_url
    refused = 'code="INVALID_ARGUMENT"'
    before = value(scrape(url), "scheduler_requests_total", refused)
    raw = b"\xff\xff\xff\xff"  # field 0x1fffff.., wire type 7: not a protobuf message at all
    with grpc.insecure_channel(main_server.address) as channel:
        schedule = channel.unary_unary(
            "/scheduler.v1.Scheduler/Schedule",
            request_serializer=lambda payload: payload,
            response_deserializer=lambda payload: payload,
        )
        with pytest.raises(grpc.RpcError) as err:
            schedule(raw, metadata=main_server.auth, timeout=30)
    failed = err.value
    assert isinstance(failed, grpc.Call)
    assert failed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.details() == (
        "request: 4 bytes that do not decode as a scheduler.v1.ScheduleRequest"
    )
    samples = scrape(url)
    assert value(samples, "scheduler_requests_total", refused) == before + 1
    audit = read_audit(main_server.audit_dir)
    assert any("do not decode" in str(line["detail"]) for line in audit)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
