"""The metric contract's series and endpoint, and the server config's refusals."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest

from jobshop_scheduler.service.config import ConfigError, ServerConfig, resolve_track
from jobshop_scheduler.service.metrics import SchedulerMetrics, start_metrics_endpoint

pytestmark = pytest.mark.unit


def test_series_exist_from_the_start_with_the_track() -> None:
    text = SchedulerMetrics("canary").exposition().decode()
    for line in (
        'scheduler_requests_total{code="OK",track="canary"} 0.0',
        'scheduler_requests_total{code="UNAUTHENTICATED",track="canary"} 0.0',
        'scheduler_jobs_requested_total{track="canary"} 0.0',
        'scheduler_jobs_scheduled_total{track="canary"} 0.0',
        'scheduler_batches_total{track="canary"} 0.0',
        'scheduler_fallback_total{reason="no_model",track="canary"} 0.0',
        'scheduler_request_duration_seconds_count{track="canary"} 0.0',
        'scheduler_makespan_ratio_count{track="canary"} 0.0',
        'scheduler_machine_time_saved{track="canary"} 0.0',
        'scheduler_greedy_cut_total{track="canary"} 0.0',
    ):
        assert line in text, line
    assert "scheduler_model_info{" not in text  # only once a model is loaded


def test_recording() -> None:
    metrics = SchedulerMetrics("stable")
    metrics.record_call(grpc.StatusCode.OK, 0.02)
    metrics.record_call(grpc.StatusCode.UNAUTHENTICATED)  # counted, not timed
    metrics.record_requested(20)
    metrics.record_answer(18, makespan=90, baseline_makespan=100, batches=1, machines=4)
    metrics.record_answer(5, makespan=50, baseline_makespan=50, batches=3, machines=7)
    metrics.record_answer(2, makespan=30, baseline_makespan=24, batches=1, machines=3)
    metrics.record_fallback("policy_error")
    metrics.record_fallback("")
    metrics.record_greedy_cut()
    metrics.set_model("v1", "a" * 64)
    metrics.set_model("v2", "b" * 64)
    text = metrics.exposition().decode()
    for line in (
        'scheduler_requests_total{code="UNAUTHENTICATED",track="stable"} 1.0',
        'scheduler_request_duration_seconds_count{track="stable"} 1.0',
        'scheduler_jobs_scheduled_total{track="stable"} 25.0',
        'scheduler_makespan_ratio_sum{track="stable"} 3.15',
        # (100 - 90) x 4 + 0 x 7 + (24 - 30) x 3: an answer longer than the rule's costs time
        'scheduler_machine_time_saved{track="stable"} 22.0',
        'scheduler_batches_total{track="stable"} 3.0',
        'scheduler_fallback_total{reason="policy_error",track="stable"} 1.0',
        'scheduler_greedy_cut_total{track="stable"} 1.0',
        f'scheduler_model_info{{sha256="{"b" * 64}",track="stable",version="v2"}} 1.0',
    ):
        assert line in text, line
    assert 'version="v1"' not in text


def test_endpoint_on_a_free_port() -> None:
    metrics = SchedulerMetrics("shadow")
    endpoint = start_metrics_endpoint(metrics.registry, "127.0.0.1", 0)
    try:
        assert endpoint.port > 0
        url = f"http://127.0.0.1:{endpoint.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert b'scheduler_jobs_requested_total{track="shadow"} 0.0' in reply.read()
    finally:
        endpoint.close()


def test_track_comes_from_the_flag_then_the_environment() -> None:
    assert resolve_track(None, {}) == "stable"
    assert resolve_track(None, {"SCHEDULER_TRACK": "shadow"}) == "shadow"
    assert resolve_track("canary", {"SCHEDULER_TRACK": "shadow"}) == "canary"
    with pytest.raises(ConfigError, match=r"\$SCHEDULER_TRACK must be one of"):
        resolve_track(None, {"SCHEDULER_TRACK": "Canary"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "no API keys"),
        ({"no_auth": True, "keys_path": Path("k")}, "contradict"),
        ({"no_auth": True, "track": "prod"}, "--track must be one of"),
        ({"no_auth": True, "tls_cert": Path("c")}, "go together"),
        ({"no_auth": True, "tls_client_ca": Path("ca")}, "needs --tls-cert"),
        ({"no_auth": True, "port": 70000}, "port must be 0-65535"),
        ({"no_auth": True, "batch_size": 0}, "batch size"),
        ({"no_auth": True, "max_jobs": 0}, "max jobs"),
        ({"no_auth": True, "max_table_cells": 0}, "max table cells must be at least 1, got 0"),
        ({"no_auth": True, "max_operations": 0}, "max operations must be at least 1, got 0"),
        ({"no_auth": True, "legacy_rule": "lifo"}, "legacy rule"),
        ({"no_auth": True, "grace_s": -1.0}, "grace"),
        ({"no_auth": True, "default_policy": "auto"}, "default policy must be one of ppo, "),
    ],
)
def test_config_refuses_what_cannot_work(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**settings)
