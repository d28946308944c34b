"""The real Prometheus server scrapes a loopback target and answers queries about it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from testbed.process import free_port
from testbed.prometheus import PrometheusServer, ScrapeJob

pytestmark = [pytest.mark.smoke, pytest.mark.prometheus]


@pytest.fixture()
def loopback_target() -> Iterator[str]:
    registry = CollectorRegistry()
    gauge = Gauge(
        "testbed_smoke_value", "a value the smoke test expects back", ["track"], registry=registry
    )
    gauge.labels(track="canary").set(42.5)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_series_scraped_from_loopback_target(
    prometheus: PrometheusServer, loopback_target: str
) -> None:
    prometheus.scrape(ScrapeJob("smoke", (loopback_target,), labels={"env": "smoke"}))
    try:
        series = prometheus.wait_for_series('testbed_smoke_value{job="smoke"}')
        assert len(series) == 1
        assert series[0]["metric"]["track"] == "canary"
        assert series[0]["metric"]["env"] == "smoke"
        assert float(series[0]["value"][1]) == 42.5

        # The operator's client library reads the same series.
        prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
        result = prom.custom_query('sum by (track) (testbed_smoke_value{job="smoke"})')
        assert [(r["metric"]["track"], float(r["value"][1])) for r in result] == [("canary", 42.5)]
        up = prom.custom_query(f'up{{instance="{loopback_target}"}}')
        assert float(up[0]["value"][1]) == 1.0
    finally:
        prometheus.forget("smoke")
