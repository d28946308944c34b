"""Every panel of the chart's Grafana dashboard, run against the end-to-end platform's real
Prometheus, must find data; and ``kubectl schedrollout report`` reads the same rollout.

One plant (the legacy stable scheduler behind Traefik, with clients) and a rollout held in its
shadow step: the stable pods mirror each request to the candidate's shadow pods (``mirror:
app``), so the shadow track, the mirror's paired outcomes and ratios exist, and the operator,
whose metrics port Prometheus scrapes here as the chart's ServiceMonitor does, exports the
rollout's phase, weight and analysis values. Grafana's variables are substituted as Grafana
would: the plant's namespace, a 1 m rate interval, a 10 m range.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout_operator import kubectl_plugin
from testbed.e2e import E2EPlatform, Plant, example_rollout
from testbed.prometheus import ScrapeJob
from tests.e2e.conftest import until

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).parents[2] / "charts/scheduler-rollouts/files/grafana-dashboard.json"
NAME = "dash"
DATA_TIMEOUT_S = 240.0


def panel_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels if p["type"] != "row" for t in p["targets"]]


def grafana(expr: str, namespace: str) -> str:
    values = {"$namespace": namespace, "$__rate_interval": "1m", "$__range": "10m"}
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not substitute: {expr}"
    return expr


def finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in result if math.isfinite(float(s["value"][1]))]


@pytest.fixture(scope="module")
def shadowing(platform: E2EPlatform) -> Iterator[Plant]:
    """A plant whose rollout stays in shadow for the module, its operator scraped."""
    plant = platform.add_plant(f"dashboard-{uuid.uuid4().hex[:5]}", seed=11)
    operator = plant.start_operator()
    job = f"operator-{plant.namespace}"
    platform.prometheus.scrape(ScrapeJob(job, (f"127.0.0.1:{operator.metrics_port()}",)))
    body = example_rollout(
        NAME, platform.prometheus.url, step_s=600, interval_s=2,
        # Held in shadow whatever the candidate's makespans: this test reads, never judges.
        shadowCompare={"maxMakespanRegression": 10.0, "minSamples": 1},
    )  # fmt: skip
    body["spec"]["steps"] = [{"shadow": {"duration": "10m"}}, {"weight": 10, "duration": "10m"}]
    plant.apply(body)
    try:
        plant.wait_phase(NAME, "Shadow", DATA_TIMEOUT_S)
        yield plant
    finally:
        platform.prometheus.forget(job)
        platform.remove_plant(plant)


def test_every_dashboard_panel_has_data(shadowing: Plant) -> None:
    prometheus = shadowing.platform.prometheus
    queries = {(title, grafana(expr, shadowing.namespace)) for title, expr in panel_queries()}

    def empty() -> list[str]:
        return [title for title, q in sorted(queries) if not finite(prometheus.query(q))]

    until(lambda: not empty(), DATA_TIMEOUT_S, "data in every panel")
    missing = empty()
    assert not missing, f"panels without data: {missing}"
    # The per-track panels see the shadow pods too, the pairs panel real comparisons.
    requests = prometheus.query(grafana(panel_queries()[0][1], shadowing.namespace))
    assert {s["metric"]["track"] for s in requests} >= {"stable", "shadow"}
    pairs = prometheus.query(
        f'sum(scheduler_shadow_pairs_total{{namespace="{shadowing.namespace}"}})'
    )
    assert float(pairs[0]["value"][1]) > 0


def test_the_report_command_reads_the_rollout_and_prometheus(
    shadowing: Plant, tmp_path: Path
) -> None:
    until(lambda: shadowing.shadow_answers("1m") >= 5, DATA_TIMEOUT_S, "shadow answers")
    time.sleep(3.0)  # scraped twice since: a rate over the rollout's life
    kubeconfig = str(shadowing.platform.kube.admin_kubeconfig)
    argv = ["--kubeconfig", kubeconfig, "-n", shadowing.namespace, "report"]
    assert kubectl_plugin.main([*argv, NAME, "--out", str(tmp_path)]) == 0
    text = (tmp_path / f"{NAME}.md").read_text()
    assert f"# Rollout report: {shadowing.namespace}/{NAME}" in text
    whole = {
        cells[1]: cells[2:]
        for line in text.splitlines()
        if (cells := [c.strip() for c in line.strip().strip("|").split("|")])[0] == "whole life"
    }
    for track in ("stable", "shadow"):  # jobs/h, makespan ratio and completion measured
        assert "no data" not in whole[track][:3], (track, whole[track])
    assert whole["canary"] == ["no data"] * 8  # no weight step yet
    assert (tmp_path / f"{NAME}.png").read_bytes()[:4] == b"\x89PNG"
    assert kubectl_plugin.main([*argv, "no-such-rollout", "--out", str(tmp_path)]) == 1
