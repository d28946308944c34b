"""A server whose model does not check out never becomes ready, and says why."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobshop_scheduler.api import pb_grpc
from jobshop_scheduler.cli import main
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.model_store import MODEL_NAME, ModelCard
from jobshop_scheduler.rl.weights import REFERENCE_NAME, WEIGHTS_NAME
from jobshop_scheduler.service.convert import problem_to_pb
from tests.tamper import tamper_reference, tamper_weights

from .conftest import ServerFactory, base_config

pytestmark = pytest.mark.grpc


def health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def tamper_card(directory: Path) -> None:
    card = ModelCard.read(directory)
    dataclasses.replace(card, sha256="0" * 64).write(directory)


def tamper_zip(directory: Path) -> None:
    with (directory / MODEL_NAME).open("ab") as fh:
        fh.write(b"tampered")


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing model file": (lambda d: (d / MODEL_NAME).unlink(), "model file missing"),
    "missing model dir": (shutil.rmtree, "model file missing"),
    "sha256 in the card tampered": (tamper_card, "checksum mismatch"),
    "model bytes tampered": (tamper_zip, "checksum mismatch"),
    "weights file missing": (lambda d: (d / WEIGHTS_NAME).unlink(), f"{WEIGHTS_NAME} missing"),
    "weights tampered, card unchanged": (
        lambda d: tamper_weights(d, resign_card=False), "checksum mismatch"),
    "weights tampered, card re-signed": (
        tamper_weights, "the fast path disagrees with SB3's recorded outputs"),
    "recorded outputs tampered, card re-signed": (
        tamper_reference, f"disagrees with SB3's recorded outputs in {REFERENCE_NAME}"),
}  # fmt: skip


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_bad_model_keeps_the_server_not_serving(
    tiny_model_dir: Path,
    tmp_path: Path,
    server_thread: ServerFactory,
    capsys: pytest.CaptureFixture[str],
    breakage: str,
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    breaks, reason = BREAKAGES[breakage]
    breaks(model_dir)
    with server_thread(base_config(model_dir), ready=False) as server:
        assert server.wait_ready() is False
        assert reason in server.running.gate.reason
        for service in ("", "scheduler.v1.Scheduler"):
            assert health(server.address, service) == health_pb2.HealthCheckResponse.NOT_SERVING
        request = problem_to_pb(production_like(5, seed=1), "heuristic")
        with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.SchedulerStub(channel).Schedule(request, timeout=10)
        failed = cast(grpc.Call, err.value)
        assert failed.code() == grpc.StatusCode.UNAVAILABLE
        assert "not ready" in str(failed.details())
        assert main(["health", "--target", server.address]) == 1
        assert "NOT_SERVING" in capsys.readouterr().err


def test_health_turns_serving_only_after_the_checks(
    tiny_model_dir: Path, server_thread: ServerFactory
) -> None:
    with server_thread(base_config(tiny_model_dir), ready=False) as server:
        # Probed from the first moment: every SERVING answer comes from a gate whose checks
        # had passed (the tiny model's checks may finish before the first probe, so whether a
        # NOT_SERVING is seen first is a race, not a property; test_bad_model_* covers it).
        deadline = time.monotonic() + 60
        while (answer := health(server.address, "")) != health_pb2.HealthCheckResponse.SERVING:
            assert answer == health_pb2.HealthCheckResponse.NOT_SERVING
            assert time.monotonic() < deadline, "never SERVING"
            time.sleep(0.01)
        assert server.running.gate.ready  # set before SERVING, so already true when it answered
        assert server.wait_ready() is True
        assert health(server.address, "scheduler.v1.Scheduler") == (
            health_pb2.HealthCheckResponse.SERVING
        )
        assert main(["health", "--target", server.address]) == 0
