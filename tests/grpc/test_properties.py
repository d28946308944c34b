"""Random and malformed requests never crash the server: each gets OK or INVALID_ARGUMENT, every
OK answer passes the validator, and the server stays SERVING throughout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.domain.model import Assignment, Schedule
from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.service.convert import problem_from_pb

from .conftest import MainServer

pytestmark = pytest.mark.grpc

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
IDS = st.sampled_from(["", "A", "B", "M1", "M2", "J1", "J1-1"]) | st.text(max_size=12)
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


def job(
    job_id: str,
    operations: list[pb.Operation],
    release: int | None,
    due: int | None,
    priority: int | None,
) -> pb.Job:
    message = pb.Job(id=job_id, operations=operations)
    if release is not None:
        message.release_time = release
    if due is not None:
        message.due_date = due
    if priority is not None:
        message.priority = priority
    return message


@st.composite
def wellformed(draw: st.DrawFn) -> pb.ScheduleRequest:
    """Requests the server should schedule: unique ids, known machines, sane numbers."""
    machines = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True))
    alternative = st.builds(
        lambda m, d: pb.Alternative(machine_id=m, duration=d),
        st.sampled_from(machines),
        st.integers(1, 10**4),
    )
    operation = st.builds(
        lambda i, alts: pb.Operation(id=i, alternatives=alts),
        st.text(min_size=1, max_size=6),
        st.lists(alternative, min_size=1, max_size=3, unique_by=lambda a: a.machine_id),
    )
    jobs = st.lists(
        st.builds(
            job,
            st.text(min_size=1, max_size=6),
            st.lists(operation, min_size=1, max_size=4, unique_by=lambda o: o.id),
            st.none() | st.integers(0, 10**4),
            st.none() | st.integers(10**4, 10**6),
            st.none() | st.integers(1, 5),
        ),
        min_size=1,
        max_size=12,
        unique_by=lambda j: j.id,
    )
    return pb.ScheduleRequest(
        request_id=draw(st.text(max_size=10)),
        machines=[pb.Machine(id=m) for m in machines],
        jobs=draw(jobs),
        policy=draw(st.sampled_from([0, 1, 2])),
    )


@st.composite
def malformed(draw: st.DrawFn) -> pb.ScheduleRequest:
    """Anything the wire format allows: clashing ids, unknown machines, any int64, empty lists."""
    machines = draw(st.lists(IDS, max_size=4))
    machine_ref = (st.sampled_from(machines) | IDS) if machines else IDS
    alternative = st.builds(
        lambda m, d: pb.Alternative(machine_id=m, duration=d),
        machine_ref,
        st.integers(-3, 30) | INT64,
    )
    operation = st.builds(
        lambda i, alts: pb.Operation(id=i, alternatives=alts),
        IDS,
        st.lists(alternative, max_size=3),
    )
    jobs = st.lists(
        st.builds(
            job,
            IDS,
            st.lists(operation, max_size=4),
            st.none() | st.integers(-5, 100) | INT64,
            st.none() | st.integers(0, 500) | INT64,
            st.none() | st.integers(-1, 4) | INT32,
        ),
        max_size=6,
    )
    return pb.ScheduleRequest(
        request_id=draw(st.text(max_size=10)),
        machines=[pb.Machine(id=m) for m in machines],
        jobs=draw(jobs),
        policy=draw(st.integers(0, 5)),
    )


@pytest.fixture(scope="module")
def channel(main_server: MainServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(main_server.address) as opened:
        yield opened


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=wellformed() | malformed())
def test_any_request_gets_a_valid_answer_or_a_precise_refusal(
    main_server: MainServer, channel: grpc.Channel, request: pb.ScheduleRequest
) -> None:
    stub = pb_grpc.SchedulerStub(channel)
    try:
        response = stub.Schedule(request, metadata=main_server.auth, timeout=30)
    except grpc.RpcError as exc:
        failed = cast(grpc.Call, exc)
        event(failed.code().name)
        assert failed.code() in ALLOWED, (failed.code(), failed.details())
        assert failed.details()
    else:
        event("OK")
        schedule = Schedule(
            tuple(
                Assignment(a.job_id, a.operation_id, a.machine_id, a.start, a.end)
                for a in response.assignments
            )
        )
        report = validate(problem_from_pb(request), schedule)
        assert report.ok, report.violations[:3]
        assert response.completion_rate == 1.0 and not response.unscheduled
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="scheduler.v1.Scheduler"), timeout=5
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
