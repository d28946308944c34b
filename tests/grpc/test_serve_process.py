"""`schedctl serve` as a real process: JSON logs, readiness, and a graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.service import client
from jobshop_scheduler.service.convert import problem_to_pb
from jobshop_scheduler.service.faults import ENABLE_ENV
from testbed.process import free_port, log_tail

pytestmark = pytest.mark.grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "requests" / "small.json"
START_TIMEOUT = 180.0
IN_FLIGHT_MS = 1500


def wait_serving(proc: subprocess.Popen[bytes], address: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"schedctl serve exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            if client.health_status(address, timeout=1, service="") == "SERVING":
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    pytest.fail(f"schedctl serve never became SERVING:\n{log_tail(log)}")


def json_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_sigterm_drains_calls_in_flight_then_exits(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"latency_ms": IN_FLIGHT_MS}))  # a call that takes a while
    log = tmp_path / "serve.log"
    argv = [
        sys.executable, "-m", "jobshop_scheduler.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--metrics-port", str(free_port()), "--model-dir",
        str(tiny_model_dir), "--no-auth", "--faults-file", str(faults), "--grace", "10",
        "--track", "canary",
    ]  # fmt: skip
    env = {**os.environ, ENABLE_ENV: "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_serving(proc, address, log)
        request = problem_to_pb(load_problem(EXAMPLE))
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.schedule, address, request, timeout=30)
            time.sleep(IN_FLIGHT_MS / 3000)  # the server is now inside the injected latency
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with pytest.raises(grpc.RpcError) as err:
                client.schedule(address, request, timeout=5)
            assert cast(grpc.Call, err.value).code() == grpc.StatusCode.UNAVAILABLE
            response = in_flight.result(timeout=30)
        assert response.completion_rate == 1.0
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = json_lines(log)
    messages = [line["message"] for line in lines]
    assert "shutting down" in messages and "stopped" in messages, log_tail(log)
    assert any(m.startswith("model checks passed") for m in messages)
    assert any(
        line["level"] == "WARNING" and "authentication is OFF" in line["message"] for line in lines
    )
    answered = [line for line in lines if line["message"] == "schedule answered"]
    assert answered and answered[0]["track"] == "canary" and answered[0]["latency_ms"] >= 1500
