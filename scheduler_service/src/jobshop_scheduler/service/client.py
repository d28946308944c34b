"""A blocking client for the scheduler: what ``schedctl schedule --target`` and ``health`` use.

Plain synchronous grpc: a command-line call makes one request and exits, so an event loop
buys nothing. Every call carries a deadline, so a black-holed address fails in ``timeout``
seconds instead of hanging a script. The API key travels as ``x-api-key`` metadata, read from
a file (never a flag: flags show up in ``ps`` and shell history).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobshop_scheduler.api import SCHEDULER_SERVICE, pb, pb_grpc
from jobshop_scheduler.service import tls
from jobshop_scheduler.service.auth import API_KEY_HEADER


class ClientError(ValueError):
    """A client-side input that cannot work; names the file, never its content."""


def read_key_file(path: Path) -> str:
    """The API key in ``path`` (one line, surrounding whitespace stripped)."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ClientError(f"API key file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"API key file cannot be read ({type(exc).__name__}): {path}") from None
    if not key or not key.isprintable() or any(c.isspace() for c in key):
        raise ClientError(f"API key file must hold one key on one line: {path}")
    return key


def open_channel(
    target: str,
    tls_ca: Path | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """An insecure channel, or a TLS one trusting ``tls_ca``; ``options`` are grpc's."""
    if tls_ca is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.channel_credentials(tls_ca), options=options)


def schedule(
    target: str,
    request: pb.ScheduleRequest,
    *,
    api_key_file: Path | None = None,
    tls_ca: Path | None = None,
    timeout: float = 60.0,
) -> pb.ScheduleResponse:
    """One Schedule call; raises ``grpc.RpcError`` with the server's status and details."""
    metadata = ((API_KEY_HEADER, read_key_file(api_key_file)),) if api_key_file else ()
    with open_channel(target, tls_ca) as channel:
        response: pb.ScheduleResponse = pb_grpc.SchedulerStub(channel).Schedule(  # type: ignore[no-untyped-call]
            request, metadata=metadata, timeout=timeout
        )
    return response


def health_status(
    target: str,
    *,
    tls_ca: Path | None = None,
    timeout: float = 5.0,
    service: str = SCHEDULER_SERVICE,
) -> str:
    """The serving status name (SERVING, NOT_SERVING, ...); raises ``grpc.RpcError``."""
    with open_channel(target, tls_ca) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
