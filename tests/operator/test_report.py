"""``kubectl schedrollout report`` against the real Prometheus: the Markdown's figures per track
and step are the numbers the scrape target was told to produce, the decisions come from the
rollout's status, and the PNG decodes.

The target writes the contract at steady rates for the stable and canary tracks of one
namespace (nothing for shadow, which must read "no data"), so every figure has an exact
expectation: 10 requests/s of 5 jobs (stable: all scheduled, 180,000 jobs/h; canary: 80%), p95
inside one latency bucket, the makespan ratios as observed, batches and machine time saved at
chosen rates. The rollout object is a dict (no cluster): its history spans the time the samples
were scraped.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.report import write
from testbed.metrics_target import MetricsTarget, contract_traffic
from testbed.prometheus import PrometheusServer, ScrapeJob

pytestmark = pytest.mark.prometheus

JOB = "operator-report"
NAMESPACE = "report-plant"
STEP_S = 6.0
SAVED_PER_S = {"stable": 0.0, "canary": 30.0}  # minutes of machine time per second
BATCHES_PER_S = {"stable": 0.0, "canary": 2.0}
MAKESPAN = {"stable": 1200.0, "canary": 1080.0}  # every answer's makespan, in minutes
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def scraped(prometheus: PrometheusServer) -> Iterator[tuple[PrometheusServer, list[float]]]:
    """The target scraped for two steps of ``STEP_S``; the three step boundaries."""
    target = MetricsTarget().start()
    stable = {"namespace": NAMESPACE, "track": "stable"}
    canary = {"namespace": NAMESPACE, "track": "canary"}
    contract_traffic(target, stable, makespan_ratio=1.0)
    contract_traffic(target, canary, completion=0.8, error_rate=0.1, makespan_ratio=0.9)
    for labels in (stable, canary):
        target.set_rate("scheduler_batches_total", labels, BATCHES_PER_S[labels["track"]])
        target.set_rate("scheduler_machine_time_saved", labels, SAVED_PER_S[labels["track"]])
        target.set_rate("scheduler_makespan_count", labels, 5.0)
        target.set_rate("scheduler_makespan_sum", labels, 5.0 * MAKESPAN[labels["track"]])
    prometheus.scrape(ScrapeJob(JOB, (target.address,), {"namespace": NAMESPACE}))
    try:
        prometheus.wait_for_series(f'rate(scheduler_requests_total{{job="{JOB}"}}[1m])')
        marks = [time.time()]
        for _ in range(2):
            time.sleep(STEP_S)
            marks.append(time.time())
        time.sleep(2.0)  # the last mark's samples scraped
        yield prometheus, marks
    finally:
        prometheus.forget(JOB)
        target.stop()


def rollout_object(prometheus_url: str, marks: list[float]) -> dict[str, Any]:
    t0, t1, t2 = marks
    return {
        "metadata": {"name": "sched-2", "namespace": NAMESPACE, "creationTimestamp": rfc3339(t0)},
        "spec": {
            "candidate": {"image": "registry.example/scheduler:2.0.0", "modelVersion": "m2"},
            "analysis": {"prometheus": {"url": prometheus_url}},
        },
        "status": {
            "phase": "RolledBack",
            "rollbackReason": "completion-rate 0.8 below 0.9 twice",
            "lastCommand": "approve@20260102T030405Z-a1b2c3",
            "history": [
                {
                    "phase": "Shadow",
                    "step": 0,
                    "weight": 0,
                    "mirrorPercent": 100,
                    "at": rfc3339(t0),
                    "reason": "Started",
                },
                {
                    "phase": "Canary",
                    "step": 1,
                    "weight": 10,
                    "mirrorPercent": 0,
                    "at": rfc3339(t1),
                    "reason": "StepPassed",
                },
                {
                    "phase": "RolledBack",
                    "step": 1,
                    "weight": 0,
                    "mirrorPercent": 0,
                    "at": rfc3339(t2),
                    "reason": "Breach",
                    "message": "completion-rate",
                },
            ],
            "signOffs": [
                {"step": 2, "role": "ops-manager", "user": "alice", "at": rfc3339(t1)},
                {"step": 2, "role": "plant-manager", "user": "bob", "at": rfc3339(t1)},
            ],
            "verification": {
                "job": "sched-2-verify",
                "state": "Succeeded",
                "reason": "",
                "result": {"passed": True, "replay": {"requests": 12, "meanRatio": 0.97}},
            },
            "shadowVerdict": {
                "pairs": 40,
                "worse": 2,
                "better": 30,
                "equal": 8,
                "estimate": 0.0625,
                "ciLow": 0.017,
                "ciHigh": 0.2,
                "meanRatio": 0.93,
                "decision": "better",
                "llr": -4.2,
            },
        },
    }


def rows(text: str, first: str) -> dict[str, list[str]]:
    """Table rows whose first cell is ``first``, by track: their figure cells."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first:
            track_at = cells.index(next(c for c in cells if c in ("stable", "canary", "shadow")))
            found[cells[track_at]] = cells[track_at + 1 :]
    return found


def number(text: str) -> float:
    scale = 0.01 if text.endswith("%") else 1.0
    return float(text.rstrip("%").replace(",", "")) * scale


def expected(track: str, seconds: float) -> list[float]:
    """jobs/h, makespan, its ratio, completion, p95, batches, error rate, machine time saved."""
    canary = track == "canary"
    return [
        (40 if canary else 50) * 3600,
        MAKESPAN[track],
        0.9 if canary else 1.0,
        0.8 if canary else 1.0,
        0.1 + 0.95 * 0.15,  # every call at 0.2 s: inside (0.1, 0.25]
        BATCHES_PER_S[track] * seconds,
        0.1 if canary else 0.0,
        SAVED_PER_S[track] * seconds,
    ]


def assert_figures(cells: list[str], track: str, seconds: float) -> None:
    for got, want in zip(cells, expected(track, seconds), strict=True):
        assert number(got) == pytest.approx(want, rel=0.12, abs=0.01), (track, cells)


def test_the_report_has_every_figure_per_track_and_step(
    scraped: tuple[PrometheusServer, list[float]], tmp_path: Path
) -> None:
    prom, marks = scraped
    written = write(rollout_object(prom.url, marks), tmp_path, now=marks[-1] + 30)
    text = written.markdown.read_text()
    assert written.markdown == tmp_path / "sched-2.md"
    for heading in (
        "# Rollout report: report-plant/sched-2",
        "## Per track over the rollout's life",
        "## Per step and track",
        "## Machine hours saved (estimate)",
        "## Decisions",
        "### Verification",
        "### Shadow verdict (sequential test)",
    ):
        assert heading in text, heading
    life = marks[2] - marks[0]
    whole = rows(text, "whole life")
    assert_figures(whole["stable"], "stable", life)
    assert_figures(whole["canary"], "canary", life)
    assert whole["shadow"] == ["no data"] * 8  # never served in this namespace
    for label, (start, end) in (
        ("Shadow step 1 (0%, mirror 100%)", marks[:2]),
        ("Canary step 2 (10%)", marks[1:]),
    ):
        step = rows(text, label)
        assert_figures(step["canary"], "canary", end - start)
        assert step["shadow"] == ["no data"] * 8
    saved = re.search(r"- canary: ([\d,.]+) machine hours", text)
    assert saved, text
    assert number(saved.group(1)) == pytest.approx(30 * life / 60, rel=0.12)
    assert "- shadow: no data" in text
    total = re.search(r"served total: ([\d,.]+) machine hours", text)
    assert total and number(total.group(1)) == pytest.approx(number(saved.group(1)), abs=0.1)


def test_the_report_names_the_decisions_and_who_took_them(
    scraped: tuple[PrometheusServer, list[float]], tmp_path: Path
) -> None:
    prom, marks = scraped
    text = write(rollout_object(prom.url, marks), tmp_path).markdown.read_text()
    decisions = text.split("## Decisions", 1)[1]
    assert re.search(r"\| sign-off as ops-manager at step 3 \| alice \|", decisions)
    assert re.search(r"\| sign-off as plant-manager at step 3 \| bob \|", decisions)
    assert "| RolledBack step 2: completion-rate | operator (Breach) |" in decisions
    assert "last command: approve (approve@20260102T030405Z-a1b2c3)" in decisions
    assert "**Rolled back:** completion-rate 0.8 below 0.9 twice" in decisions
    assert '"meanRatio": 0.97' in decisions
    assert "decision: **better** after 40 pairs (2 worse, 30 better, 8 equal)" in decisions


def test_the_png_is_a_valid_image(
    scraped: tuple[PrometheusServer, list[float]], tmp_path: Path
) -> None:
    import matplotlib.image  # noqa: PLC0415 - the report extra, installed with the workspace

    prom, marks = scraped
    written = write(rollout_object(prom.url, marks), tmp_path, step_s=1.0)
    assert written.png == tmp_path / "sched-2.png"
    assert written.png.read_bytes()[:8] == PNG_MAGIC
    height, width, _ = matplotlib.image.imread(written.png).shape
    assert width >= 600 and height >= 600


def test_an_unreachable_prometheus_gives_no_data_not_a_crash(
    scraped: tuple[PrometheusServer, list[float]], tmp_path: Path
) -> None:
    _, marks = scraped
    began = time.monotonic()
    written = write(
        rollout_object("http://127.0.0.1:9", marks), tmp_path, prometheus="http://127.0.0.1:9"
    )
    text = written.markdown.read_text()
    assert time.monotonic() - began < 30  # one refused connection, not one per query
    assert rows(text, "whole life")["stable"] == ["no data"] * 8
    assert "Prometheus at http://127.0.0.1:9 unreachable" in text
    assert "- **served total: no data**" in text
    assert written.png is not None and written.png.read_bytes()[:8] == PNG_MAGIC
