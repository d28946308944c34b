"""Variants of the flow in test_rollout_flow.py, with the same fixtures (conftest): the other
rollback triggers, a warning that does not roll back, the Istio and replica-ratio routers, the
abort/retry/promote commands, the notification webhook, the shadow makespan comparison, and the
operator's liveness and metrics endpoints.

Every test runs the real ``rollout-operator`` process against the real kube-apiserver and
Prometheus; metric values come from conftest's scrape target, set per namespace and track.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rollout_operator.routers.replicas import plan_replicas
from testbed.operator_process import OperatorProcess
from testbed.recorder import Seen
from tests.operator.conftest import (
    CANDIDATE_IMAGE,
    Bed,
    changes,
    free_port,
    rollout_manifest,
    route_weights,
    vs_weights,
)

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

Obj = dict[str, Any]
NAME = "scheduler-1-5-0"
SHORT_PLAN: list[Obj] = [  # shadow, 10, 50, approval, 100 with 2 s steps
    {"shadow": {"duration": "2s"}},
    {"weight": 10, "duration": "2s"},
    {"weight": 50, "duration": "2s"},
    {"approval": {}},
    {"weight": 100, "duration": "2s"},
]


def phases_of(seen: list[Seen]) -> list[Any]:
    """The phases announced, in order; the version without a status may come and go before
    the watch starts, so it is not part of the sequence."""
    phases = [(s.obj.get("status") or {}).get("phase") for s in seen]
    return changes([phase for phase in phases if phase is not None])


def conditions(status: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in status.get("conditions") or []}


def wait_event(bed: Bed, name: str, match: Callable[[Obj], bool], timeout: float = 5) -> Obj:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in bed.events(name) if match(e)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no such event for {name}: {bed.events(name)}")


# --- 1. every rollback trigger -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "bad", "pattern"),
    [
        # The default rule (above 10 s for 3 intervals); 20 s requests put p95 in the 15-20 bucket.
        (
            "latency-p95-seconds",
            {"latency_s": 20.0},
            r"latency-p95-seconds \d+\.\d+ > 10(\.0+)? for 3 intervals",
        ),
        # The default rule (above 0.05 for 2 intervals); every request of the canary fails. The
        # window reaches back to the canary step's start only, so its few healthy answers before
        # the fault may round away ("1").
        ("error-rate", {"error_rate": 1.0}, r"error-rate (0\.\d+|1) > 0\.05 for 2 intervals"),
    ],
)
def test_each_rollback_trigger_rolls_back(
    bed: Bed,
    start_operator: Callable[..., OperatorProcess],
    rule: str,
    bad: dict[str, float],
    pattern: str,
) -> None:
    routes = bed.record_routes()
    operator = start_operator(bed.namespace)
    steps = [{"shadow": {"duration": "1s"}}, {"weight": 10, "duration": "60s"}]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps))

    bed.wait_for(NAME, lambda s: s.get("phase") == "Canary" and s.get("step") == 1, 30, operator)
    bed.traffic("canary", **bad)

    final = bed.wait_phase(NAME, "RolledBack", 30, operator)
    time.sleep(0.5)
    reason = final["rollbackReason"]
    assert re.fullmatch(pattern, reason), reason
    rolled_back = conditions(final)["RolledBack"]
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "ThresholdBreached")
    assert final["counters"]["breaches"][rule] >= 2
    assert route_weights(bed.route()) == (100, 0)
    assert changes([route_weights(s.obj) for s in routes.of("scheduler")]) == [
        (1, None), (100, 0), (90, 10), (100, 0)
    ]  # fmt: skip
    candidate = bed.deployment("scheduler-candidate")
    assert candidate is not None
    assert candidate["spec"]["replicas"] == 0
    wait_event(bed, NAME, lambda e: e["reason"] == "RolledBack" and rule in e["message"])


# --- 2. a warning, no rollback -------------------------------------------------------------------


def test_warning_threshold_raises_condition_and_event_but_promotes(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    rollouts = bed.record_rollouts()
    # The canary's p95 lands between the default warning (5 s) and rollback (10 s) thresholds:
    # 7 s requests fall in the 5-7.5 s bucket, so p95 never goes above 7.5 s.
    bed.traffic("canary", latency_s=7.0)
    operator = start_operator(bed.namespace)
    steps = [
        {"shadow": {"duration": "1s"}},
        {"weight": 10, "duration": "4s"},
        {"weight": 100, "duration": "1s"},
    ]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps))

    final = bed.wait_phase(NAME, "Succeeded", 60, operator)
    time.sleep(0.5)
    assert "rollbackReason" not in final or not final["rollbackReason"]
    assert "RolledBack" not in phases_of(rollouts.of(NAME))
    warned = [
        s.obj["status"]
        for s in rollouts.of(NAME)
        if conditions(s.obj.get("status") or {}).get("Warning", {}).get("status") == "True"
    ]
    assert warned, "the Warning condition was never True"
    message = conditions(warned[0])["Warning"]["message"]
    assert "latency-p95-seconds" in message, message
    assert warned[0]["phase"] == "Canary"
    event = wait_event(
        bed,
        NAME,
        lambda e: (
            e["type"] == "Warning"
            and e["reason"] == "AnalysisWarning"
            and "latency-p95-seconds" in e["message"]
        ),
    )
    assert re.search(r"latency-p95-seconds [5-7]\.\d+ > 5", event["message"]), event["message"]
    stable = bed.deployment("scheduler")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == CANDIDATE_IMAGE


# --- 3. the other routers ------------------------------------------------------------------------


def test_istio_router_walks_every_step_and_promotes(
    make_bed: Callable[..., Bed], start_operator: Callable[..., OperatorProcess]
) -> None:
    bed = make_bed("istio")
    routes, rollouts = bed.record_routes("istio"), bed.record_rollouts()
    operator = start_operator(bed.namespace)
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, provider="istio"))

    bed.wait_phase(NAME, "Shadow", 30, operator)
    assert vs_weights(bed.route(provider="istio")) == (100, 0)
    # The application mirrors (mirror: app, the default); the VirtualService gets no mirror.
    assert bed.mirror() == {"target": "scheduler-canary:50051", "percent": 100, "timeout_ms": 30000}
    assert "mirror" not in bed.route(provider="istio")["spec"]["http"][0]

    bed.wait_phase(NAME, "AwaitingApproval", 40, operator)
    time.sleep(1.5)
    assert bed.status(NAME)["phase"] == "AwaitingApproval"
    assert vs_weights(bed.route(provider="istio")) == (50, 50)
    assert bed.plugin("approve", NAME) == 0

    bed.wait_phase(NAME, "Succeeded", 30, operator)
    time.sleep(0.5)
    weights = changes([vs_weights(s.obj) for s in routes.of("scheduler")])
    assert weights == [(None, None), (100, 0), (90, 10), (75, 25), (50, 50), (0, 100), (100, 0)]
    canary_dest = routes.of("scheduler")[-1].obj["spec"]["http"][0]["route"][1]["destination"]
    assert canary_dest == {"host": "scheduler-canary", "port": {"number": 50051}}
    assert phases_of(rollouts.of(NAME)) == [
        "Pending", "Shadow", "Canary", "AwaitingApproval", "Canary", "Promoting", "Succeeded"
    ]  # fmt: skip
    assert bed.deployment("scheduler-candidate") is None
    assert (bed.mirror() or {})["percent"] == 0


def replica_pairs(deployments: list[Seen]) -> list[tuple[int | None, int | None]]:
    """(stable, candidate) spec.replicas after every Deployment version, without repeats
    (None: that Deployment does not exist)."""
    current: dict[str, int | None] = {"scheduler": None, "scheduler-candidate": None}
    pairs = []
    for s in deployments:
        name = s.obj["metadata"]["name"]
        if name in current:
            current[name] = None if s.type == "DELETED" else s.obj["spec"]["replicas"]
            pairs.append((current["scheduler"], current["scheduler-candidate"]))
    return changes(pairs)


def test_replica_ratio_router_walks_a_short_plan_and_promotes(
    make_bed: Callable[..., Bed], start_operator: Callable[..., OperatorProcess]
) -> None:
    bed = make_bed("replicas")
    deployments, rollouts = bed.record_deployments(), bed.record_rollouts()
    operator = start_operator(bed.namespace)
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, provider="replicas", steps=SHORT_PLAN))

    bed.wait_phase(NAME, "Shadow", 30, operator)
    assert bed.mirror() == {"target": "scheduler-canary:50051", "percent": 100, "timeout_ms": 30000}
    bed.wait_phase(NAME, "AwaitingApproval", 40, operator)
    time.sleep(1.0)
    assert bed.plugin("approve", NAME) == 0
    bed.wait_phase(NAME, "Succeeded", 30, operator)
    time.sleep(0.5)

    # The replica counts routers/replicas.py plans for a stable of 3 pods.
    shadow, w10, w50, w100 = (
        plan_replicas(3, w, m) for w, m in ((0, 100), (10, 0), (50, 0), (100, 0))
    )
    assert (shadow, w10, w50, w100) == ((3, 1), (3, 1), (3, 3), (0, 3))
    pairs = replica_pairs(deployments.seen)
    assert pairs[:5] == [(3, None), (3, 0), shadow, w50, w100], pairs
    # Succeeded: the stable, promoted, back at its 3 pods; the candidate gone.
    assert pairs[-1] == (3, None), pairs
    # ... and never fewer than 3 available pods between them: the candidate's pods went only
    # once the promoted stable had all its pods available.
    last: dict[str, Obj] = {}
    for seen in deployments.seen:
        last[seen.obj["metadata"]["name"]] = seen.obj
        stable_now, cand_now = last.get("scheduler"), last.get("scheduler-candidate")
        if stable_now is None or cand_now is None or seen.type == "DELETED":
            continue
        if cand_now["spec"]["replicas"] == 0 and stable_now["spec"]["replicas"] == 3:
            image = stable_now["spec"]["template"]["spec"]["containers"][0]["image"]
            if image == CANDIDATE_IMAGE:  # the promotion's scale-down
                st = stable_now.get("status") or {}
                ready = st.get("observedGeneration") == stable_now["metadata"]["generation"]
                assert ready and st.get("availableReplicas") == 3, (stable_now, cand_now)
                break
    assert phases_of(rollouts.of(NAME)) == [
        "Pending", "Shadow", "Canary", "AwaitingApproval", "Canary", "Promoting", "Succeeded"
    ]  # fmt: skip
    stable = bed.deployment("scheduler")
    assert stable is not None
    assert stable["spec"]["replicas"] == 3
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == CANDIDATE_IMAGE
    assert "rollouts.scheduling.io/stable-replicas" not in (
        stable["metadata"].get("annotations") or {}
    )
    assert bed.deployment("scheduler-candidate") is None
    assert (bed.mirror() or {})["percent"] == 0


# --- 4. commands ---------------------------------------------------------------------------------


def test_abort_retry_and_promote_commands(
    make_bed: Callable[..., Bed], start_operator: Callable[..., OperatorProcess]
) -> None:
    aborted, promoted = make_bed(), make_bed()
    rollouts = aborted.record_rollouts()
    operator = start_operator(aborted.namespace, promoted.namespace)
    steps = [{"shadow": {"duration": "1s"}}, {"weight": 25, "duration": "60s"}]
    aborted.apply(rollout_manifest(NAME, aborted.prometheus_url, steps=steps))
    long_shadow = [{"shadow": {"duration": "600s"}}, {"weight": 25, "duration": "600s"}]
    promoted.apply(rollout_manifest(NAME, promoted.prometheus_url, steps=long_shadow))

    # abort during a canary step
    at_25 = lambda s: s.get("phase") == "Canary" and route_weights(aborted.route()) == (75, 25)  # noqa: E731
    aborted.wait_for(NAME, at_25, 30, operator)  # the weight follows the candidate's re-roll
    assert aborted.plugin("abort", NAME) == 0
    final = aborted.wait_phase(NAME, "RolledBack", 10, operator)
    assert final["rollbackReason"] == "aborted by user"
    assert conditions(final)["RolledBack"]["reason"] == "Aborted"
    assert route_weights(aborted.route()) == (100, 0)

    # retry: from step 0 again, through the shadow, to the canary step
    assert aborted.plugin("retry", NAME) == 0
    again = aborted.wait_for(NAME, lambda s: s.get("phase") == "Canary", 30, operator)
    assert again["step"] == 1
    assert "rollbackReason" not in again or not again["rollbackReason"]
    assert conditions(again)["RolledBack"]["status"] == "False"
    states = changes([
        ((s.obj.get("status") or {}).get("phase"), (s.obj.get("status") or {}).get("step"))
        for s in rollouts.of(NAME)
    ])  # fmt: skip
    after = states[states.index(("RolledBack", 1)) :]
    assert after[0] == ("RolledBack", 1)
    assert after[1] in {("Pending", 0), ("Shadow", 0)}, after
    assert ("Shadow", 0) in after
    aborted.wait_for(NAME, at_25, 30, operator)  # once the re-rolled candidate is available

    # promote during the shadow: the remaining steps are skipped
    promoted.wait_phase(NAME, "Shadow", 30, operator)
    assert promoted.plugin("promote", NAME) == 0
    done = promoted.wait_phase(NAME, "Succeeded", 30, operator)
    assert done["step"] == 0
    assert conditions(done)["Approved"]["reason"] == "Promoted"
    reasons = [e["reason"] for e in promoted.events(NAME)]
    assert "Promoting" in reasons
    assert "Canary" not in reasons
    stable = promoted.deployment("scheduler")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == CANDIDATE_IMAGE
    assert route_weights(promoted.route()) == (100, 0)


# --- 5. the notification webhook -----------------------------------------------------------------


class Hook:
    """An HTTP server that keeps the JSON body of every POST."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[Obj]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                assert self.headers.get("Content-Type") == "application/json"
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    server = Hook()
    try:
        yield server
    finally:
        server.close()


def test_webhook_receives_phase_changes_and_the_rollback(
    bed: Bed, hook: Hook, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator(bed.namespace)
    steps = [{"shadow": {"duration": "1s"}}, {"weight": 10, "duration": "60s"}]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps, webhook=hook.url))
    bed.wait_phase(NAME, "Canary", 30, operator)
    bed.traffic("canary", completion=0.5)
    bed.wait_phase(NAME, "RolledBack", 30, operator)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(p["event"] == "rollback" for p in hook.received):
        time.sleep(0.1)

    got = list(hook.received)
    for payload in got:
        assert set(payload) == {"event", "message", "namespace", "rollout", "phase", "weight"}
        assert (payload["namespace"], payload["rollout"]) == (bed.namespace, NAME)
    assert [(p["event"], p["phase"], p["weight"]) for p in got] == [
        ("phaseChanged", "Pending", 0),
        ("phaseChanged", "Shadow", 0),
        ("phaseChanged", "Canary", 10),
        ("rollback", "RolledBack", 0),
    ], got
    assert got[-1]["message"].startswith("rolled back: completion-rate "), got[-1]


# --- 6. the shadow makespan comparison -----------------------------------------------------------


def test_shadow_makespan_regression_rolls_back_during_the_shadow(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    # The healthy case (shadow's mean ratio equal to stable's lets the shadow step end) is the
    # shadow step of test_rollout_flow.py's healthy rollout, which has the same default series.
    routes, config_maps, rollouts = (
        bed.record_routes(), bed.record_config_maps(), bed.record_rollouts()
    )  # fmt: skip
    operator = start_operator(bed.namespace)
    steps = [{"shadow": {"duration": "60s"}}, {"weight": 10, "duration": "60s"}]
    compare = {"maxMakespanRegression": 0.02}
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps, shadowCompare=compare))

    bed.wait_phase(NAME, "Shadow", 30, operator)

    # Rounds with equal ratios pass before the shadow's schedules get longer.
    def compared_equal(status: Obj) -> bool:
        metrics = (status.get("lastAnalysis") or {}).get("metrics") or []
        return any(m["kind"] == "shadowCompare" and m["verdict"] == "pass" for m in metrics)

    bed.wait_for(NAME, compared_equal, 15, operator)
    assert bed.status(NAME)["counters"]["breaches"]["shadow-makespan-regression"] == 0
    bed.traffic("shadow", makespan_ratio=1.5)  # stable stays at 1.0

    final = bed.wait_phase(NAME, "RolledBack", 30, operator)
    time.sleep(0.5)
    reason = final["rollbackReason"]
    assert re.fullmatch(r"shadow-makespan-regression 0\.\d+ > 0\.02 for 1 interval", reason), reason
    assert final["step"] == 0
    rolled_back = conditions(final)["RolledBack"]
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "ThresholdBreached")
    assert final["counters"]["breaches"]["shadow-makespan-regression"] == 1
    assert phases_of(rollouts.of(NAME)) == ["Pending", "Shadow", "RolledBack"]
    # Never a weight step: the route stayed at 100/0; the mirroring stopped.
    assert changes([route_weights(s.obj) for s in routes.of("scheduler")]) == [
        (1, None), (100, 0)
    ]  # fmt: skip
    assert route_weights(bed.route()) == (100, 0)
    percents = changes([s.obj["data"]["mirror.json"] for s in config_maps.of("scheduler-mirror")])
    assert [json.loads(p)["percent"] for p in percents] == [100, 0]
    assert (bed.mirror() or {})["percent"] == 0
    candidate = bed.deployment("scheduler-candidate")
    assert candidate is not None
    assert candidate["spec"]["replicas"] == 0
    wait_event(
        bed,
        NAME,
        lambda e: e["reason"] == "RolledBack" and "shadow-makespan-regression" in e["message"],
    )


# --- 7. the operator's liveness and metrics endpoints --------------------------------------------


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_liveness_and_metrics_endpoints_on_the_given_ports(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    metrics_port, health_port = free_port(), free_port()
    while health_port == metrics_port:
        health_port = free_port()
    operator = start_operator(bed.namespace, metrics_port=metrics_port, health_port=health_port)
    assert operator.metrics_port() == metrics_port
    steps = [{"shadow": {"duration": "60s"}}, {"weight": 10, "duration": "60s"}]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps))
    bed.wait_phase(NAME, "Shadow", 30, operator)

    # kopf's liveness endpoint comes up with the operator's watches, shortly after /metrics.
    healthz = f"http://127.0.0.1:{health_port}/healthz"
    deadline = time.monotonic() + 10
    while True:
        try:
            code, _ = get(healthz)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert code == 200
    time.sleep(1.0)
    assert operator.running
    assert get(healthz)[0] == 200  # still alive while it runs

    phase = re.compile(r"rollout_operator_phase\{([^}]*)\} (\S+)")
    deadline = time.monotonic() + 5
    while True:
        code, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert code == 200
        ours = {
            labels: float(value)
            for labels, value in phase.findall(text)
            if f'rollout="{NAME}"' in labels and f'namespace="{bed.namespace}"' in labels
        }
        current = [labels for labels, value in ours.items() if value == 1.0]
        if any('phase="Shadow"' in labels for labels in current) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(current) == 1 and 'phase="Shadow"' in current[0], text
    assert all(value == 0.0 for labels, value in ours.items() if labels not in current), ours
