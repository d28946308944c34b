"""Assemble and run the scheduler's gRPC server: one place wires every service module together.

``serve(config)`` starts a server and returns at once, NOT_SERVING while the model gate checks
the model in the background; tests use it in-process on port 0. ``run(config)`` is what
``schedctl serve`` calls: it serves until SIGTERM or SIGINT, then shuts down the way Kubernetes
expects: health turns NOT_SERVING first (the endpoint drops out of the Service), new calls are
refused, calls in flight get ``grace_s`` seconds to finish. Everything started is owned by one
exit stack, so a failure half-way through start-up (a port in use, a bad keys file) leaves no
thread, port or file handle behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobshop_scheduler.api import SCHEDULER_SERVICE
from jobshop_scheduler.service import tls
from jobshop_scheduler.service.audit import AuditTrail
from jobshop_scheduler.service.auth import ApiKeyInterceptor
from jobshop_scheduler.service.call_metrics import CallMetricsInterceptor
from jobshop_scheduler.service.config import ServerConfig
from jobshop_scheduler.service.faults import FaultInjector
from jobshop_scheduler.service.keys import KeyStore
from jobshop_scheduler.service.metrics import SchedulerMetrics, start_metrics_endpoint
from jobshop_scheduler.service.mirror import Mirror
from jobshop_scheduler.service.readiness import (
    ModelGate,
    new_health_servicer,
    thaw_startup_objects,
)
from jobshop_scheduler.service.servicer import SchedulerServicer, add_scheduler

log = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a max_jobs request with many alternatives fits
_ANY_HOST = ("", "0.0.0.0", "::", "[::]")


class StartError(RuntimeError):
    """The server could not start (a port in use, unreadable credentials)."""


@dataclass
class RunningServer:
    """A started server: its bound ports, its parts (for tests to inspect) and ``stop``."""

    config: ServerConfig
    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    servicer: SchedulerServicer
    gate: ModelGate
    metrics: SchedulerMetrics
    audit: AuditTrail | None
    _stack: contextlib.AsyncExitStack
    _health: Any
    _gate_task: asyncio.Task[None]
    _stopped: bool = field(default=False)

    @property
    def address(self) -> str:
        """Where a client on this machine reaches the server."""
        host = self.config.host
        host = "127.0.0.1" if host in _ANY_HOST else host
        return f"{host}:{self.port}"

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the model gate has decided; True when SERVING."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._gate_task), timeout)
        return self.gate.ready

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, give calls in flight ``grace`` seconds, release all."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.grace_s if grace is None else grace
        log.info("shutting down", extra={"fields": {"grace_s": grace}})
        await self._health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self._stack.aclose()
        thaw_startup_objects()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    address = f"{config.host}:{config.port}"
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            creds = tls.server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises this when it cannot bind
        raise StartError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise StartError(f"cannot listen on {address}")
    return port


def _key_store(config: ServerConfig) -> KeyStore | None:
    if config.keys_path is None:
        log.warning("authentication is OFF (--no-auth): every caller is served anonymously")
        return None
    store = KeyStore.from_file(config.keys_path)
    if not len(store):
        log.warning("the keys file admits nobody", extra={"fields": {"keys": 0}})
    return store


def _grpc_server(
    config: ServerConfig, metrics: SchedulerMetrics, store: KeyStore | None
) -> grpc.aio.Server:
    interceptors = [
        CallMetricsInterceptor(metrics),  # outermost: sees rejected calls too
        ApiKeyInterceptor(store, reload_every_s=config.keys_reload_s),
    ]
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    return grpc.aio.server(interceptors=interceptors, options=options)


async def _start_extras(
    stack: contextlib.AsyncExitStack,
    config: ServerConfig,
    metrics: SchedulerMetrics,
    environ: Mapping[str, str] | None,
) -> tuple[AuditTrail | None, Mirror | None, FaultInjector | None]:
    """The optional parts: audit trail, mirroring, test fault injection."""
    audit = None
    if config.audit_dir is not None:
        audit = AuditTrail(config.audit_dir, config.audit_max_bytes, config.audit_backups)
        stack.callback(audit.close)
    mirror = None
    if config.mirror_config is not None:
        mirror = Mirror(config.mirror_config, metrics.registry, config.track)
        await mirror.start()
        stack.push_async_callback(mirror.stop)
    faults = None
    if config.faults_file is not None:
        faults = FaultInjector(config.faults_file, environ=environ)
        await faults.start()
        stack.push_async_callback(faults.stop)
    return audit, mirror, faults


async def serve(config: ServerConfig, environ: Mapping[str, str] | None = None) -> RunningServer:
    """Start a server; it turns SERVING once the model gate passes (see ``wait_ready``)."""
    async with contextlib.AsyncExitStack() as stack:
        metrics = SchedulerMetrics(config.track)
        store = _key_store(config)
        audit, mirror, faults = await _start_extras(stack, config, metrics, environ)
        executor = ThreadPoolExecutor(config.workers, thread_name_prefix="planner")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        servicer = SchedulerServicer(
            track=config.track, metrics=metrics, executor=executor, limits=config.limits,
            legacy_rule=config.legacy_rule,
            batch_size=config.batch_size, default_policy=config.default_policy, audit=audit,
            mirror=mirror, faults=faults, time_budget_ms=config.time_budget_ms,
            max_time_budget_ms=config.max_time_budget_ms,
        )  # fmt: skip
        health = new_health_servicer()
        gate = ModelGate(
            config.model_dir, health, servicer.use_model, warm_search=config.time_budget_ms > 0
        )
        await gate.start_not_serving()
        server = _grpc_server(config, metrics, store)
        add_scheduler(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        names = (SCHEDULER_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        port = _bind(server, config)
        metrics_port = None
        if config.metrics_port is not None:
            host = config.metrics_host or config.host
            try:
                endpoint = start_metrics_endpoint(metrics.registry, host, config.metrics_port)
            except OSError as exc:
                raise StartError(
                    f"cannot serve metrics on {host}:{config.metrics_port}: {exc}"
                ) from exc
            stack.callback(endpoint.close)
            metrics_port = endpoint.port
        await server.start()
        stack.push_async_callback(server.stop, None)
        gate_task = asyncio.create_task(gate.run(), name="model gate")
        stack.push_async_callback(_cancel, gate_task)
        _log_started(config, port, metrics_port, store is not None)
        return RunningServer(
            config, server, port, metrics_port, servicer, gate, metrics, audit,
            stack.pop_all(), health, gate_task,
        )  # fmt: skip
    raise AssertionError("unreachable")  # the exit stack does not swallow exceptions


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _log_started(config: ServerConfig, port: int, metrics_port: int | None, auth: bool) -> None:
    fields = {
        "host": config.host, "port": port, "metrics_port": metrics_port, "track": config.track,
        "tls": config.tls, "mutual_tls": config.tls_client_ca is not None, "auth": auth,
        "model_dir": str(config.model_dir), "max_jobs": config.max_jobs,
        "max_operations": config.max_operations, "max_table_cells": config.max_table_cells,
        "batch_size": config.batch_size, "legacy_rule": config.legacy_rule,
        "default_policy": config.default_policy, "time_budget_ms": config.time_budget_ms,
        "max_time_budget_ms": config.max_time_budget_ms,
    }  # fmt: skip
    log.info(
        "scheduler listening; NOT_SERVING until the model checks pass", extra={"fields": fields}
    )


async def run(config: ServerConfig, environ: Mapping[str, str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (``config.grace_s``)."""
    running = await serve(config, environ)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await running.stop()
