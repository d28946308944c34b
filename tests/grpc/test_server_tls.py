"""The full scheduler server over TLS with API keys, called by the library and by schedctl."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import pytest

from jobshop_scheduler.api import pb_grpc
from jobshop_scheduler.cli import main
from jobshop_scheduler.domain.codec import load_problem
from jobshop_scheduler.service.convert import problem_to_pb
from jobshop_scheduler.service.tls import channel_credentials
from testbed.pki import CertificateAuthority, CertPair

from .conftest import ServerFactory, ServerThread, base_config

pytestmark = pytest.mark.grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "requests" / "small.json"


@dataclass
class TlsServer:
    server: ServerThread
    ca: Path
    key: str


@pytest.fixture(scope="module")
def tls_server(
    pki: tuple[CertificateAuthority, CertPair],
    api_key: tuple[str, Path],
    tiny_model_dir: Path,
    server_thread: ServerFactory,
) -> Iterator[TlsServer]:
    ca, cert = pki
    key, keys_path = api_key
    config = base_config(
        tiny_model_dir, no_auth=False, keys_path=keys_path, tls_cert=cert.cert, tls_key=cert.key
    )
    with server_thread(config) as server:
        yield TlsServer(server, ca.cert_path, key)


def test_tls_round_trip_with_keys_and_plaintext_refused(tls_server: TlsServer) -> None:
    request = problem_to_pb(load_problem(EXAMPLE))
    auth = [("x-api-key", tls_server.key)]
    address = tls_server.server.address
    with grpc.secure_channel(address, channel_credentials(tls_server.ca)) as channel:
        response = pb_grpc.SchedulerStub(channel).Schedule(request, metadata=auth, timeout=30)
    assert response.completion_rate == 1.0 and response.policy_used == "ppo"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as err:
        pb_grpc.SchedulerStub(channel).Schedule(request, metadata=auth, timeout=10)
    assert cast(grpc.Call, err.value).code() == grpc.StatusCode.UNAVAILABLE


def test_schedctl_over_tls(
    tls_server: TlsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(tls_server.key + "\n")
    tls = ["--target", tls_server.server.address, "--tls-ca", str(tls_server.ca)]
    assert main(["schedule", str(EXAMPLE), *tls, "--api-key-file", str(key_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["completion_rate"] == 1.0
    assert main(["health", *tls]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
