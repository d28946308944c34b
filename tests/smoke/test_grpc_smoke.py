"""Stubs generated from protos/ by the build serve a real gRPC server on loopback."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from jobshop_scheduler.api import pb, pb_grpc

pytestmark = [pytest.mark.smoke, pytest.mark.grpc]


async def test_generated_stubs_on_a_real_server() -> None:
    server = grpc.aio.server()
    pb_grpc.add_SchedulerServicer_to_server(pb_grpc.SchedulerServicer(), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await health_servicer.set("scheduler.v1.Scheduler", health_pb2.HealthCheckResponse.SERVING)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="scheduler.v1.Scheduler")
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            request = pb.ScheduleRequest(request_id="r1", machines=[pb.Machine(id="M1")])
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.SchedulerStub(channel).Schedule(request)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(grace=None)
