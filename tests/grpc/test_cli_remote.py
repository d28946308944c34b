"""`schedctl schedule --target`, `schedctl health` and the start-up refusals of `schedctl serve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobshop_scheduler.cli import main
from jobshop_scheduler.service.config import KEYS_ENV, TRACK_ENV
from testbed.process import free_port

from .conftest import MainServer

pytestmark = pytest.mark.grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "requests" / "small.json"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def key_file(main_server: MainServer, tmp_path: Path) -> Path:
    path = tmp_path / "api-key"
    path.write_text(main_server.key + "\n")
    return path


def test_schedule_on_a_server_prints_json_and_draws_a_gantt(
    main_server: MainServer, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "plan.png"
    args = ["--target", main_server.address, "--api-key-file", str(key_file)]
    assert main(["schedule", str(EXAMPLE), *args, "--json", "--gantt", str(chart)]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["completion_rate"] == 1.0 and response["policy_used"] == "ppo"
    assert response["request_id"] == "example-small"
    assert set(response["assignments"][0]) == {
        "job_id",
        "operation_id",
        "machine_id",
        "start",
        "end",
    }
    assert chart.read_bytes().startswith(PNG)

    assert main(["schedule", str(EXAMPLE), *args, "--policy", "heuristic"]) == 0
    table = capsys.readouterr().out
    assert "policy      mwkr" in table and "completion  1.000" in table


def test_local_schedule_draws_a_gantt_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "local.png"
    assert (
        main(["schedule", str(EXAMPLE), "--local", "--policy", "spt", "--gantt", str(chart)]) == 0
    )
    assert "policy      spt" in capsys.readouterr().out
    assert chart.read_bytes().startswith(PNG)


def test_remote_errors_exit_with_the_status(
    main_server: MainServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", main_server.address]
    assert main(["schedule", str(EXAMPLE), *target]) == 2
    assert "UNAUTHENTICATED: missing API key" in capsys.readouterr().err
    assert main(["schedule", str(EXAMPLE), *target, "--api-key-file", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "API key file not found" in err
    assert main(["schedule", str(EXAMPLE), *target, "--policy", "spt"]) == 2
    assert "--policy must be one of" in capsys.readouterr().err
    assert main(["schedule", str(EXAMPLE), "--local", *target]) == 2
    assert "either --local" in capsys.readouterr().err
    closed = f"127.0.0.1:{free_port()}"
    assert main(["schedule", str(EXAMPLE), "--target", closed, "--timeout", "2"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_health_command(main_server: MainServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--target", main_server.address]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert main(["health", "--target", f"127.0.0.1:{free_port()}", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err


def test_serve_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv(TRACK_ENV, raising=False)
    base = ["serve", "--port", "0", "--metrics-port", "0", "--model-dir", str(tmp_path)]
    assert main(base) == 2
    assert "no API keys" in capsys.readouterr().err
    assert main([*base, "--keys", str(tmp_path / "missing-keys")]) == 2
    assert "no such keys file" in capsys.readouterr().err
    assert main([*base, "--no-auth", "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    monkeypatch.setenv(TRACK_ENV, "blue")
    assert main([*base, "--no-auth"]) == 2
    assert "$SCHEDULER_TRACK must be one of stable, canary, shadow" in capsys.readouterr().err
