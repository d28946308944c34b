"""The one evaluator and the provider's reading of Prometheus answers: no data is never a verdict.

Faults a real Prometheus cannot produce on demand (a server that never answers, HTTP 503, a body
that is not JSON) come from tiny loopback servers; the rest is pure.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rollout_operator.analysis import NoData, analyse, evaluate
from rollout_operator.analysis.prometheus import PrometheusProvider, read_result
from rollout_operator.analysis.queries import SHADOW_COMPARE
from rollout_operator.model import (
    AnalysisSpec,
    Comparison,
    Rule,
    ShadowCompare,
    Verdict,
)
from testbed.process import free_port

pytestmark = pytest.mark.unit

COMPLETION = Rule("completion-rate", "", Comparison.BELOW, 0.90, for_=2)
LATENCY = Rule("latency-p95-seconds", "", Comparison.ABOVE, 10.0, for_=3)


# --- evaluate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "verdict"),
    [
        (COMPLETION, 0.84, Verdict.BREACH),
        (COMPLETION, 0.8999999, Verdict.BREACH),
        (COMPLETION, 0.90, Verdict.PASS),  # at the threshold: no breach
        (COMPLETION, 1.0, Verdict.PASS),
        (COMPLETION, 0.0, Verdict.BREACH),
        (LATENCY, 10.0, Verdict.PASS),
        (LATENCY, 10.000001, Verdict.BREACH),
        (LATENCY, 0.0, Verdict.PASS),
        (LATENCY, -1.0, Verdict.PASS),
    ],
)
def test_threshold_edges(rule: Rule, value: float, verdict: Verdict) -> None:
    result = evaluate(rule, value)
    assert result.verdict is verdict
    assert result.value == value
    assert (result.name, result.threshold, result.comparison) == (
        rule.name,
        rule.threshold,
        rule.comparison,
    )


def test_detail_reads_like_a_rollback_reason() -> None:
    assert evaluate(COMPLETION, 0.84).detail == "completion-rate 0.84 < 0.9"
    assert evaluate(COMPLETION, 0.97).detail == "completion-rate 0.97 >= 0.9"
    assert evaluate(LATENCY, 12.5).detail == "latency-p95-seconds 12.5 > 10"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("rule", [COMPLETION, LATENCY])
def test_non_finite_values_are_no_data(rule: Rule, value: float) -> None:
    result = evaluate(rule, value)
    assert result.verdict is Verdict.NO_DATA
    assert result.value is None


@pytest.mark.parametrize("rule", [COMPLETION, LATENCY])
def test_no_data_keeps_its_reason_and_is_never_a_verdict(rule: Rule) -> None:
    result = evaluate(rule, NoData("query returned no series"))
    assert result.verdict is Verdict.NO_DATA
    assert result.value is None
    assert "query returned no series" in result.detail
    assert result.threshold == rule.threshold


# --- reading Prometheus answers ---------------------------------------------------------------


def _series(value: str, **labels: str) -> dict[str, object]:
    return {"metric": labels, "value": [1700000000.123, value]}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ([_series("0.97")], 0.97),
        ([_series("0", track="canary")], 0.0),
        ([1700000000.0, "3.5"], 3.5),  # scalar
    ],
)
def test_one_sample_is_a_number(result: object, expected: float) -> None:
    assert read_result(result) == expected


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ([], "no series"),
        ([_series("1", track="a"), _series("2", track="b")], "2 series, expected 1"),
        ([_series("NaN")], "NaN"),
        ([_series("+Inf")], "+inf"),
        ([_series("-Inf")], "-inf"),
        ([1700000000.0, "NaN"], "NaN"),
        ([_series("abc")], "non-number"),
        ([{"metric": {}, "values": [[1, "1"], [2, "2"]]}], "range vector"),
        ({"unexpected": True}, "unexpected"),
        (None, "unexpected"),
    ],
)
def test_anything_but_one_finite_sample_is_no_data(result: object, reason: str) -> None:
    measured = read_result(result)
    assert isinstance(measured, NoData)
    assert reason in measured.reason
    assert not measured.bad_query


# --- provider faults that a real Prometheus cannot produce on demand -------------------------


def _http_server(status: int, body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def unavailable() -> Iterator[str]:
    body = json.dumps({"status": "error", "errorType": "unavailable", "error": "overloaded"})
    yield from _http_server(503, body.encode())


@pytest.fixture()
def not_json() -> Iterator[str]:
    yield from _http_server(200, b"<html>a proxy's login page</html>")


@pytest.fixture()
def silent() -> Iterator[str]:
    """Accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_http_error_is_no_data_with_the_servers_message(unavailable: str) -> None:
    with PrometheusProvider(unavailable) as provider:
        measured = provider.query("up")
    assert measured == NoData("Prometheus answered HTTP 503: overloaded")


def test_a_body_that_is_not_the_api_is_no_data(not_json: str) -> None:
    with PrometheusProvider(not_json) as provider:
        measured = provider.query("up")
    assert isinstance(measured, NoData)
    assert "unreadable answer" in measured.reason


def test_a_server_that_never_answers_is_no_data_after_the_timeout(silent: str) -> None:
    started = time.monotonic()
    with PrometheusProvider(silent, timeout_s=0.3) as provider:
        measured = provider.query("up")
    assert measured == NoData(f"Prometheus at {silent} did not answer within 0.3s")
    assert time.monotonic() - started < 10 * 0.3  # no retries behind the timeout


def test_unreachable_prometheus_gives_no_data_for_every_rule_without_raising() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens
    spec = AnalysisSpec(
        interval_s=10,
        prometheus_url=url,
        rollback=(COMPLETION, LATENCY, Rule("error-rate", "", Comparison.ABOVE, 0.05, for_=2)),
        warn=(Rule("memory-utilisation", "", Comparison.ABOVE, 0.9),),
        shadow_compare=ShadowCompare(),
    )
    started = time.monotonic()
    report = analyse(spec, track="shadow", namespace="ns", rollout="r", shadow=True, now=1.0)
    elapsed = time.monotonic() - started
    results = [*report.rollback, *report.warn, report.shadow_compare]
    assert [r.verdict for r in results if r] == [Verdict.NO_DATA] * 5
    assert all(
        r and "unreachable" in r.detail and "Connection refused" in r.detail for r in results
    )
    assert report.has_no_data
    assert elapsed < 5  # refused at once: no retries, no back-off


# --- the runner with an injected provider ------------------------------------------------------


class Recorded:
    """Answers by the metric name in the query; records what it was asked."""

    def __init__(self, answers: dict[str, float | NoData]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str) -> float | NoData:
        self.asked.append(promql)
        for needle, answer in self.answers.items():
            if needle in promql:
                return answer
        return NoData("query returned no series")


SPEC = AnalysisSpec(
    interval_s=30,
    prometheus_url="http://unused:9090",
    rollback=(COMPLETION, LATENCY),
    warn=(Rule("completion-rate", "", Comparison.BELOW, 0.95),),
    shadow_compare=ShadowCompare(max_makespan_regression=0.0),
)


def test_runner_measures_rollback_and_warn_rules_in_order() -> None:
    provider = Recorded(
        {"scheduler_jobs_scheduled_total": 0.93, "scheduler_request_duration": math.nan}
    )
    report = analyse(
        SPEC,
        track="canary",
        namespace="plant",
        rollout="r1",
        shadow=False,
        now=123.0,
        provider=provider,
    )
    assert report.time == 123.0
    assert [(r.name, r.verdict) for r in report.rollback] == [
        ("completion-rate", Verdict.PASS),
        ("latency-p95-seconds", Verdict.NO_DATA),
    ]
    assert [(r.name, r.verdict, r.threshold) for r in report.warn] == [
        ("completion-rate", Verdict.BREACH, 0.95)
    ]
    assert report.shadow_compare is None  # not in shadow
    assert len(provider.asked) == 3
    assert all('track="canary", namespace="plant"' in q and "[60s]" in q for q in provider.asked)


def test_runner_adds_the_shadow_comparison_in_shadow() -> None:
    provider = Recorded({"scheduler_makespan_ratio_sum": 0.02})
    report = analyse(
        SPEC,
        track="shadow",
        namespace="plant",
        rollout="r1",
        shadow=True,
        now=1.0,
        provider=provider,
    )
    assert report.shadow_compare is not None
    assert report.shadow_compare.name == SHADOW_COMPARE
    assert report.shadow_compare.verdict is Verdict.BREACH
    assert report.shadow_compare.detail == f"{SHADOW_COMPARE} 0.02 > 0"


def ranges(asked: list[str]) -> list[set[str]]:
    """The ranges each query reads, in the order asked."""
    return [set(re.findall(r"\[(\d+m?s)\]", promql)) for promql in asked]


def test_the_rules_and_the_shadow_comparison_read_no_sample_from_before_their_start() -> None:
    # A previous candidate reported under the same track and namespace until just before this
    # attempt: a whole window would judge this candidate partly on that one's answers.
    provider = Recorded({})
    analyse(SPEC, track="shadow", namespace="plant", rollout="r1", shadow=True, now=100.0,
            provider=provider, since=88.0, shadow_since=95.5)  # fmt: skip
    rules, compare = ranges(provider.asked[:3]), ranges(provider.asked[3:])
    assert rules == [{"12000ms"}] * 3
    assert compare == [{"4500ms"}]  # the mean ratios and the sample count alike
    provider = Recorded({})
    analyse(SPEC, track="shadow", namespace="plant", rollout="r1", shadow=True, now=1000.0,
            provider=provider, since=88.0, shadow_since=95.5)  # fmt: skip
    assert ranges(provider.asked) == [{"60s"}] * 4  # old enough: the whole window
    provider = Recorded({})
    analyse(SPEC, track="shadow", namespace="plant", rollout="r1", shadow=True, now=100.0,
            provider=provider, since=97.0, shadow_since=95.5)  # fmt: skip
    assert ranges(provider.asked) == [{"3000ms"}] * 4  # the template changed mid-shadow
    provider = Recorded({})
    analyse(SPEC, track="canary", namespace="plant", rollout="r1", shadow=False, now=100.0,
            provider=provider)  # fmt: skip
    assert ranges(provider.asked) == [{"60s"}] * 3  # no start known (a status from before)


def test_runner_rejects_a_rule_without_query_or_built_in_before_measuring() -> None:
    spec = AnalysisSpec(
        interval_s=30,
        prometheus_url="http://unused:9090",
        rollback=(COMPLETION, Rule("pods-restarting", "", Comparison.ABOVE, 0)),
    )
    provider = Recorded({})
    with pytest.raises(ValueError, match="'pods-restarting'"):
        analyse(
            spec,
            track="canary",
            namespace="n",
            rollout="r",
            shadow=False,
            now=0,
            provider=provider,
        )
    assert provider.asked == []
