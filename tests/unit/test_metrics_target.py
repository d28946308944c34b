"""The test-controlled scrape target: counters keep counting across rate changes, buckets add up."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.metrics_target import MetricsTarget, contract_traffic

pytestmark = pytest.mark.unit


def samples(target: MetricsTarget) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = target.exposition()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_counter_continues_from_its_value_when_its_rate_changes() -> None:
    target = MetricsTarget()
    target.set_rate("c_total", {"track": "canary"}, 1000.0, at=time.time() - 2)
    target.set_rate("c_total", {"track": "canary"}, 0.0)
    (value,) = samples(target).values()
    assert value == pytest.approx(2000.0, rel=0.05)
    assert samples(target) == {("c_total", (("track", "canary"),)): value}  # stands still now


def test_contract_histogram_buckets_are_cumulative_and_match_the_count() -> None:
    target = MetricsTarget()
    contract_traffic(target, {"track": "canary"}, latency_s=7.0)
    time.sleep(0.05)
    seen = samples(target)
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in seen.items()
        if name == "scheduler_request_duration_seconds_bucket"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert all(v == 0 for le, v in buckets if le < 7.0)
    count = seen["scheduler_request_duration_seconds_count", (("track", "canary"),)]
    assert counts[-1] == count > 0


def test_it_serves_over_http() -> None:
    target = MetricsTarget().start()
    try:
        target.set_gauge("g", {"pod": 'a"b'}, 1.5)
        with urllib.request.urlopen(f"http://{target.address}/metrics", timeout=5) as resp:
            assert resp.read().decode() == 'g{pod="a\\"b"} 1.5\n'
    finally:
        target.stop()
