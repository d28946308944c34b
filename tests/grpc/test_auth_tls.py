"""API-key auth and TLS on a real grpc.aio server over loopback, with real clients."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.service.auth import CLIENT_KEY_ID, INVALID, MISSING, ApiKeyInterceptor
from jobshop_scheduler.service.keys import KeyStore, generate_key
from jobshop_scheduler.service.tls import channel_credentials, server_credentials
from testbed.pki import CertificateAuthority, CertPair
from testbed.process import free_port

pytestmark = pytest.mark.grpc

TIMEOUT = 10.0


class EchoKeyId(pb_grpc.SchedulerServicer):
    """Stand-in servicer: answers with the key id the interceptor handed to it."""

    async def Schedule(
        self, request: pb.ScheduleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ScheduleResponse:
        return pb.ScheduleResponse(request_id=CLIENT_KEY_ID.get())


class SyncEchoKeyId(pb_grpc.SchedulerServicer):
    """The same, as a sync handler: grpc.aio runs it in a thread pool."""

    def Schedule(
        self, request: pb.ScheduleRequest, context: grpc.ServicerContext
    ) -> pb.ScheduleResponse:
        return pb.ScheduleResponse(request_id=CLIENT_KEY_ID.get())


@dataclass
class Running:
    server: grpc.aio.Server
    address: str


async def start(
    interceptor: ApiKeyInterceptor,
    servicer: Any = None,
    credentials: grpc.ServerCredentials | None = None,
) -> Running:
    server = grpc.aio.server(interceptors=[interceptor])
    pb_grpc.add_SchedulerServicer_to_server(servicer or EchoKeyId(), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"127.0.0.1:{free_port()}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    await server.start()
    await health_servicer.set("scheduler.v1.Scheduler", health_pb2.HealthCheckResponse.SERVING)
    return Running(server, address)


@pytest.fixture
def key_and_store(tmp_path: Path) -> tuple[str, KeyStore]:
    key, line = generate_key("test-client")
    path = tmp_path / "keys"
    path.write_text(line + "\n")
    return key, KeyStore.from_file(path)


@pytest.fixture
async def authed(key_and_store: tuple[str, KeyStore]) -> AsyncIterator[Running]:
    running = await start(ApiKeyInterceptor(key_and_store[1]))
    yield running
    await running.server.stop(grace=None)


async def schedule(
    channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = ()
) -> pb.ScheduleResponse:
    stub = pb_grpc.SchedulerStub(channel)
    return await stub.Schedule(
        pb.ScheduleRequest(request_id="r1"), metadata=metadata, timeout=TIMEOUT
    )


async def rejected(channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]) -> str:
    """The details of the UNAUTHENTICATED error the call must fail with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await schedule(channel, metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return str(err.value.details())


async def test_no_key_is_unauthenticated(authed: Running) -> None:
    async with grpc.aio.insecure_channel(authed.address) as channel:
        assert await rejected(channel, ()) == MISSING
        assert await rejected(channel, [("authorization", "Basic dXNlcjpwYXNz")]) == MISSING


async def test_wrong_key_is_unauthenticated_without_echo(
    authed: Running, key_and_store: tuple[str, KeyStore]
) -> None:
    key = key_and_store[0]
    key_id, secret = key.split(".")
    wrong = f"{key_id}.{secret[::-1]}"
    unknown, _ = generate_key()
    async with grpc.aio.insecure_channel(authed.address) as channel:
        for presented in (wrong, unknown, "not-a-key"):
            details = await rejected(channel, [("x-api-key", presented)])
            assert details == INVALID
            assert presented not in details and secret[::-1] not in details
        assert await rejected(channel, [("authorization", f"Bearer {wrong}")]) == INVALID


async def test_valid_key_reaches_the_handler(
    authed: Running, key_and_store: tuple[str, KeyStore]
) -> None:
    key = key_and_store[0]
    key_id = key.split(".")[0]
    async with grpc.aio.insecure_channel(authed.address) as channel:
        assert (await schedule(channel, [("x-api-key", key)])).request_id == key_id
        assert (await schedule(channel, [("authorization", f"Bearer {key}")])).request_id == key_id
        assert (await schedule(channel, [("authorization", f"bearer {key}")])).request_id == key_id
    assert CLIENT_KEY_ID.get() == "anonymous"  # nothing leaked into the test's own context


async def test_health_needs_no_key(authed: Running) -> None:
    async with grpc.aio.insecure_channel(authed.address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="scheduler.v1.Scheduler"), timeout=TIMEOUT
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_sync_handlers_see_the_key_id_too(key_and_store: tuple[str, KeyStore]) -> None:
    key, store = key_and_store
    running = await start(ApiKeyInterceptor(store), SyncEchoKeyId())
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            response = await schedule(channel, [("x-api-key", key)])
        assert response.request_id == key.split(".")[0]
    finally:
        await running.server.stop(grace=None)


async def test_no_store_means_anonymous() -> None:
    running = await start(ApiKeyInterceptor(None))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            assert (await schedule(channel)).request_id == "anonymous"
    finally:
        await running.server.stop(grace=None)


async def test_rotated_keys_take_effect_without_restart(tmp_path: Path) -> None:
    old_key, old_line = generate_key()
    path = tmp_path / "keys"
    path.write_text(old_line + "\n")
    running = await start(ApiKeyInterceptor(KeyStore.from_file(path), reload_every_s=0.0))
    try:
        new_key, new_line = generate_key()
        path.write_text(new_line + "\n")
        os.utime(path, ns=(0, 10**18))  # a distinct mtime even on coarse-clock filesystems
        async with grpc.aio.insecure_channel(running.address) as channel:
            assert (await schedule(channel, [("x-api-key", new_key)])).request_id
            assert await rejected(channel, [("x-api-key", old_key)]) == INVALID
    finally:
        await running.server.stop(grace=None)


def key_id_streams() -> grpc.GenericRpcHandler[Any, Any]:
    """Streaming methods of every kind, sync and async, each answering with CLIENT_KEY_ID."""

    def key_id() -> bytes:
        return CLIENT_KEY_ID.get().encode()

    async def async_gen(_request: bytes, _context: Any) -> AsyncIterator[bytes]:
        yield key_id()
        yield key_id()

    def sync_gen(_request: bytes, _context: Any) -> Iterator[bytes]:
        yield key_id()
        yield key_id()

    async def stream_in(requests: AsyncIterator[bytes], _context: Any) -> bytes:
        async for _ in requests:
            pass
        return key_id()

    async def bidi(requests: AsyncIterator[bytes], _context: Any) -> AsyncIterator[bytes]:
        yield key_id()  # the server speaks first: a denial must not wait for a request
        async for _ in requests:
            yield key_id()

    return grpc.method_handlers_generic_handler(
        "test.Streams",
        {
            "AsyncGen": grpc.unary_stream_rpc_method_handler(async_gen),
            "SyncGen": grpc.unary_stream_rpc_method_handler(sync_gen),
            "StreamIn": grpc.stream_unary_rpc_method_handler(stream_in),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


def raw(data: bytes) -> bytes:
    return data


async def silent() -> AsyncIterator[bytes]:
    """A request stream that never sends and never half-closes: the client waits."""
    await asyncio.Event().wait()
    yield b""


async def test_streaming_methods_get_the_key_id_or_are_denied(
    key_and_store: tuple[str, KeyStore],
) -> None:
    key, store = key_and_store
    key_id = key.split(".")[0].encode()
    running = await start(ApiKeyInterceptor(store))
    running.server.add_generic_rpc_handlers((key_id_streams(),))
    auth = (("x-api-key", key),)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            for name in ("AsyncGen", "SyncGen"):
                stream = channel.unary_stream(f"/test.Streams/{name}", raw, raw)
                assert [item async for item in stream(b"", metadata=auth)] == [key_id] * 2, name
            stream_in = channel.stream_unary("/test.Streams/StreamIn", raw, raw)
            assert await stream_in(iter([b"a", b"b"]), metadata=auth) == key_id
            bidi = channel.stream_stream("/test.Streams/Bidi", raw, raw)
            assert [item async for item in bidi(iter([b"a"]), metadata=auth)] == [key_id] * 2

            denied = bidi(silent(), timeout=TIMEOUT)  # no key, and the client waits to be spoken to
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await denied.read()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            sync_gen = channel.unary_stream("/test.Streams/SyncGen", raw, raw)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await sync_gen(b"", timeout=TIMEOUT).read()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            nowhere = channel.unary_unary("/test.Nowhere/Call", raw, raw)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await nowhere(b"", timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # not UNIMPLEMENTED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await nowhere(b"", metadata=auth, timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.server.stop(grace=None)


async def test_tls_round_trip_and_plaintext_is_refused(
    pki: tuple[CertificateAuthority, CertPair], key_and_store: tuple[str, KeyStore]
) -> None:
    ca, cert = pki
    key, store = key_and_store
    running = await start(
        ApiKeyInterceptor(store), credentials=server_credentials(cert.cert, cert.key)
    )
    try:
        creds = channel_credentials(ca.cert_path)
        async with grpc.aio.secure_channel(running.address, creds) as channel:
            response = await schedule(channel, [("x-api-key", key)])
        assert response.request_id == key.split(".")[0]

        async with grpc.aio.insecure_channel(running.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await schedule(channel, [("x-api-key", key)])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.server.stop(grace=None)


async def test_mutual_tls_requires_a_client_certificate(
    pki: tuple[CertificateAuthority, CertPair],
) -> None:
    ca, cert = pki
    client = ca.issue("client", "plant-a")
    credentials = server_credentials(cert.cert, cert.key, client_ca_file=ca.cert_path)
    running = await start(ApiKeyInterceptor(None), credentials=credentials)
    try:
        with_cert = channel_credentials(ca.cert_path, client.cert, client.key)
        async with grpc.aio.secure_channel(running.address, with_cert) as channel:
            assert (await schedule(channel)).request_id == "anonymous"
        async with grpc.aio.secure_channel(
            running.address, channel_credentials(ca.cert_path)
        ) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await schedule(ch)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.server.stop(grace=None)


def test_tls_file_errors_name_the_path(
    tmp_path: Path, pki: tuple[CertificateAuthority, CertPair]
) -> None:
    ca, cert = pki
    missing = tmp_path / "absent.crt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        server_credentials(missing, cert.key)
    with pytest.raises(FileNotFoundError, match="client CA"):
        server_credentials(cert.cert, cert.key, client_ca_file=missing)
    with pytest.raises(FileNotFoundError, match="CA certificate"):
        channel_credentials(missing)
    with pytest.raises(ValueError, match="not PEM"):
        server_credentials(cert.key, cert.key)  # a key where the certificate belongs
    with pytest.raises(ValueError, match="not PEM") as err:
        server_credentials(cert.cert, cert.cert)
    assert "BEGIN CERTIFICATE-----\n" not in str(err.value)  # contents never echoed
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        channel_credentials(tmp_path)
    with pytest.raises(ValueError, match="private key"):
        channel_credentials(ca.cert_path, cert_file=cert.cert)
