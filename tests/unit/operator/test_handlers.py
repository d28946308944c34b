"""The kopf glue that needs no cluster: kopf's credentials and the timer's filter."""

from __future__ import annotations

import pytest
from kubernetes import client

from rollout_operator.handlers import connection_info, in_progress
from rollout_operator.model import Phase

pytestmark = pytest.mark.unit


def test_kopf_logs_in_with_the_client_certificate_of_the_kubeconfig() -> None:
    config = client.Configuration()
    config.host = "https://127.0.0.1:6443"
    config.ssl_ca_cert = "/tmp/ca.crt"
    config.cert_file, config.key_file = "/tmp/admin.crt", "/tmp/admin.key"
    info = connection_info(config)
    assert (info.server, info.ca_path, info.insecure) == (
        "https://127.0.0.1:6443",
        "/tmp/ca.crt",
        False,
    )
    assert (info.certificate_path, info.private_key_path) == ("/tmp/admin.crt", "/tmp/admin.key")
    assert (info.scheme, info.token, info.username) == (None, None, None)


def test_a_bearer_token_is_refreshed_before_kopf_gets_it() -> None:
    config = client.Configuration()
    config.host = "https://kubernetes.default.svc"
    config.verify_ssl = False
    calls = []

    def refresh(c: client.Configuration) -> None:
        calls.append(1)
        c.api_key["authorization"] = f"token-{len(calls)}"
        c.api_key_prefix["authorization"] = "Bearer"

    config.refresh_api_key_hook = refresh  # type: ignore[assignment]
    first, second = connection_info(config), connection_info(config)
    assert (first.scheme, first.insecure) == ("Bearer", True)
    assert first.token is not None
    assert first.token.startswith("token-")
    assert second.token != first.token  # kopf calls the login again after a 401


@pytest.mark.parametrize("phase", list(Phase))
def test_the_timer_ticks_only_for_rollouts_in_progress(phase: Phase) -> None:
    finished = {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.INVALID}
    assert in_progress(status={"phase": phase.value}) is (phase not in finished)


def test_a_new_rollout_without_status_is_in_progress() -> None:
    assert in_progress(status={})
