"""The real Prometheus scrapes two real scheduler servers (stable, canary) and sees the contract.

What the operator's analysis and the chart's alerts rely on, end to end: every series of the
metric contract arrives in Prometheus, labelled with the track of the server that exported it,
and the completion-rate query of the design (scheduled / requested, by track) reads 1 for
servers whose answers placed every job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from jobshop_scheduler.api import pb_grpc
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.service.convert import problem_to_pb
from testbed.prometheus import PrometheusServer, ScrapeJob

from .conftest import CONTRACT, ServerFactory, ServerThread, base_config

pytestmark = [pytest.mark.prometheus, pytest.mark.grpc]

JOB = "scheduler-contract"
TRACKS = ("stable", "canary")
CALLS = {"stable": (8, 8, 8, 250), "canary": (8, 8)}  # jobs per call; 250 = two batches of 170
SCRAPE_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def servers(
    tiny_model_dir: Path, server_thread: ServerFactory
) -> Iterator[dict[str, ServerThread]]:
    with ExitStack() as stack:
        yield {
            track: stack.enter_context(server_thread(base_config(tiny_model_dir, track=track)))
            for track in TRACKS
        }


@pytest.fixture()
def scraped(
    prometheus: PrometheusServer, servers: dict[str, ServerThread]
) -> Iterator[PrometheusServer]:
    targets = tuple(f"127.0.0.1:{s.running.metrics_port}" for s in servers.values())
    prometheus.scrape(ScrapeJob(JOB, targets))
    try:
        yield prometheus
    finally:
        prometheus.forget(JOB)


def schedule(server: ServerThread, jobs: int, seed: int) -> None:
    with grpc.insecure_channel(server.address) as channel:
        answer = pb_grpc.SchedulerStub(channel).Schedule(
            problem_to_pb(production_like(jobs, seed=seed)), timeout=60
        )
    assert answer.completion_rate == 1.0


def by_track(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["track"]: float(r["value"][1]) for r in result}


def wait_for_calls(prometheus: PrometheusServer) -> None:
    """Until Prometheus has scraped every call's bookkeeping (scrapes run every second)."""
    expected = {track: float(len(calls)) for track, calls in CALLS.items()}
    query = f'sum by (track) (scheduler_requests_total{{job="{JOB}", code="OK"}})'
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = by_track(prometheus.query(query))
        if seen == expected:
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus saw OK calls {seen}, expected {expected}")


def test_contract_series_reach_prometheus_with_their_track(
    scraped: PrometheusServer, servers: dict[str, ServerThread]
) -> None:
    for track, calls in CALLS.items():
        for seed, jobs in enumerate(calls):
            schedule(servers[track], jobs, seed)
    wait_for_calls(scraped)

    for name in CONTRACT:
        series = scraped.query(f'{name}{{job="{JOB}"}}')
        assert {s["metric"]["track"] for s in series} == set(TRACKS), name
    up = scraped.query(f'up{{job="{JOB}"}}')
    metrics_ports = {f"127.0.0.1:{s.running.metrics_port}" for s in servers.values()}
    assert {u["metric"]["instance"] for u in up} == metrics_ports
    assert all(float(u["value"][1]) == 1.0 for u in up)

    completion = by_track(
        scraped.query(
            f'sum by (track) (scheduler_jobs_scheduled_total{{job="{JOB}"}}) '
            f'/ sum by (track) (scheduler_jobs_requested_total{{job="{JOB}"}})'
        )
    )
    assert completion == {"stable": 1.0, "canary": 1.0}
    requested = by_track(scraped.query(f'scheduler_jobs_requested_total{{job="{JOB}"}}'))
    assert requested == {track: float(sum(calls)) for track, calls in CALLS.items()}
    batches = by_track(scraped.query(f'scheduler_batches_total{{job="{JOB}"}}'))
    assert batches == {"stable": 2.0, "canary": 0.0}
    latency = by_track(scraped.query(f'scheduler_request_duration_seconds_count{{job="{JOB}"}}'))
    assert latency == {track: float(len(calls)) for track, calls in CALLS.items()}
    models = scraped.query(f'scheduler_model_info{{job="{JOB}"}}')
    assert {(m["metric"]["track"], m["metric"]["version"]) for m in models} == {
        ("stable", "test-tiny-1"),
        ("canary", "test-tiny-1"),
    }
    fallbacks = scraped.query(f'sum by (track) (scheduler_fallback_total{{job="{JOB}"}})')
    assert by_track(fallbacks) == {"stable": 0.0, "canary": 0.0}
