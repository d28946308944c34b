"""The real ``rollout-operator`` process driving rollouts against the real kube-apiserver and
Prometheus, with durations of seconds.

The GRPCRoute, the mirror ConfigMap and the rollout are watched for the whole test (conftest's
``Recorder``), so the assertions are about every version the API server stored, in order, not
about samples. Metric values come from a scrape target the test controls (conftest); Deployments
are kept available by conftest's ``Readiness`` since there is no kubelet.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from rollout_operator.status import parse_time
from testbed.operator_process import OperatorProcess
from tests.operator.conftest import (
    CANDIDATE_IMAGE,
    Bed,
    changes,
    closed_port_url,
    rollout_manifest,
    route_weights,
)

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

Obj = dict[str, Any]
NAME = "scheduler-1-5-0"


def step_changes(seen: list[Any]) -> list[tuple[str, int, str]]:
    """(phase, step, stepStartedAt) of every status version, without consecutive repeats."""
    states = []
    for s in seen:
        status = s.obj.get("status") or {}
        if "phase" in status:
            states.append((status["phase"], status["step"], status.get("stepStartedAt") or ""))
    return changes(states)


def test_healthy_rollout_walks_every_step_and_promotes(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    routes, config_maps, rollouts = (
        bed.record_routes(), bed.record_config_maps(), bed.record_rollouts()
    )  # fmt: skip
    operator = start_operator(bed.namespace)
    bed.apply(rollout_manifest(NAME, bed.prometheus_url))

    bed.wait_phase(NAME, "Shadow", 30, operator)
    assert route_weights(bed.route()) == (100, 0)
    assert bed.mirror() == {"target": "scheduler-canary:50051", "percent": 100, "timeout_ms": 30000}

    bed.wait_phase(NAME, "AwaitingApproval", 40, operator)
    held_since = time.monotonic()
    while time.monotonic() - held_since < 2.5:  # no progress without the approval
        assert bed.status(NAME)["phase"] == "AwaitingApproval"
        assert route_weights(bed.route()) == (50, 50)
        time.sleep(0.25)
    assert bed.plugin("approve", NAME) == 0

    final = bed.wait_phase(NAME, "Succeeded", 30, operator)
    time.sleep(0.5)  # let the watches deliver the last versions

    # The route, version by version: shadow at 100/0 (the stable pods mirror), the three weight
    # steps, the approval at 50/50, 100 %, then back to stable, which now runs the candidate.
    weights = changes([route_weights(s.obj) for s in routes.of("scheduler")])
    assert weights == [(1, None), (100, 0), (90, 10), (75, 25), (50, 50), (0, 100), (100, 0)]
    percents = changes([s.obj["data"]["mirror.json"] for s in config_maps.of("scheduler-mirror")])
    assert [json.loads(p)["percent"] for p in percents] == [100, 0]

    # (the version without a status may be gone before the watch starts)
    seen = [(s.obj.get("status") or {}).get("phase") for s in rollouts.of(NAME)]
    phases = changes([phase for phase in seen if phase is not None])
    assert phases == [
        "Pending", "Shadow", "Canary", "AwaitingApproval", "Canary", "Promoting", "Succeeded"
    ]  # fmt: skip
    steps = [(phase, step) for phase, step, _ in step_changes(rollouts.of(NAME))]
    assert steps == [
        ("Pending", 0), ("Shadow", 0), ("Canary", 1), ("Canary", 2), ("Canary", 3),
        ("AwaitingApproval", 4), ("Canary", 5), ("Promoting", 5), ("Succeeded", 5),
    ]  # fmt: skip

    # Promoted: the stable Deployment runs the candidate's image, the candidate is gone.
    stable = bed.deployment("scheduler")
    assert stable is not None
    container = stable["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == CANDIDATE_IMAGE
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["MODEL_VERSION"] == "2026.11.1"
    assert env["SCHEDULER_TRACK"] == "stable"
    assert bed.deployment("scheduler-candidate") is None
    assert route_weights(bed.route()) == (100, 0)
    assert (bed.mirror() or {})["percent"] == 0
    assert final["weight"] == 0
    assert {c["type"]: c["status"] for c in final["conditions"]}["Approved"] == "True"

    # What people see: kubectl's printer columns, the plugin, events, the operator's metrics.
    table = bed.cluster.plane.kubectl("get", "sro", "-n", bed.namespace)
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "PHASE", "STEP", "WEIGHT"]
    assert row.split()[:4] == [NAME, "Succeeded", "5", "0"]
    reasons = {e["reason"] for e in bed.events(NAME)}
    assert {"Shadow", "Canary", "AwaitingApproval", "Promoting", "Succeeded"} <= reasons
    metrics = operator.metrics()
    assert re.search(
        rf'rollout_operator_phase\{{[^}}]*phase="Succeeded"[^}}]*rollout="{NAME}"[^}}]*\}} 1\.0',
        metrics,
    ), metrics


def test_completion_rate_breach_rolls_back(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    routes, rollouts = bed.record_routes(), bed.record_rollouts()
    operator = start_operator(bed.namespace)
    steps = [{"shadow": {"duration": "2s"}}, {"weight": 10, "duration": "60s"}]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps))

    bed.wait_for(NAME, lambda s: s.get("phase") == "Canary" and s.get("step") == 1, 30, operator)
    bed.traffic("canary", completion=0.5)  # from now on the canary schedules half the jobs

    final = bed.wait_phase(NAME, "RolledBack", 30, operator)
    time.sleep(0.5)

    # Named: the rule, the value, the threshold and the count.
    reason = final["rollbackReason"]
    assert re.fullmatch(r"completion-rate 0\.[0-8]\d* < 0\.90 for 2 intervals", reason), reason
    rolled_back = {c["type"]: c for c in final["conditions"]}["RolledBack"]
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "ThresholdBreached")
    # Two consecutive breaching rounds, the first one a round before the rollback.
    breaches = [
        (s.obj["status"]["counters"]["breaches"].get("completion-rate", 0), s.obj["status"])
        for s in rollouts.of(NAME)
        if (s.obj.get("status") or {}).get("counters")
    ]
    assert changes([b for b, _ in breaches])[-2:] == [1, 2]

    # Routing back to stable within one analysis interval of the round that reached `for`.
    decided = parse_time(final["lastAnalysis"]["time"])
    restored = [s for s in routes.of("scheduler") if route_weights(s.obj) == (100, 0)][-1]
    assert 0 <= restored.at - decided < 1.0, (restored.at, decided)
    assert changes([route_weights(s.obj) for s in routes.of("scheduler")]) == [
        (1, None), (100, 0), (90, 10), (100, 0)
    ]  # fmt: skip
    assert [step for _, step, _ in step_changes(rollouts.of(NAME))][-1] == 1  # never reached 25%

    # The candidate is kept for root-cause analysis, without pods; a Warning event says why.
    candidate = bed.deployment("scheduler-candidate")
    assert candidate is not None
    assert candidate["spec"]["replicas"] == 0
    stable = bed.deployment("scheduler")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] != CANDIDATE_IMAGE
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        warnings = [e for e in bed.events(NAME) if e["type"] == "Warning"]
        if any(e["reason"] == "RolledBack" and "completion-rate" in e["message"] for e in warnings):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no Warning event for the rollback: {bed.events(NAME)}")


def test_sigkill_mid_step_resumes_the_same_step_with_its_remaining_time(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    rollouts = bed.record_rollouts()
    operator = start_operator(bed.namespace)
    steps = [
        {"shadow": {"duration": "2s"}},
        {"weight": 10, "duration": "8s"},
        {"weight": 25, "duration": "2s"},
        {"weight": 100, "duration": "1s"},
    ]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps))
    at_10 = bed.wait_for(NAME, lambda s: s.get("step") == 1, 30, operator)
    time.sleep(2.0)

    operator.kill()
    killed_at = time.time()
    time.sleep(2.0)
    assert bed.status(NAME)["step"] == 1  # nobody moved it meanwhile
    operator.start()
    restarted_at = time.time()

    final = bed.wait_phase(NAME, "Succeeded", 40, operator)
    time.sleep(0.5)
    history = step_changes(rollouts.of(NAME))
    # Every step entered once, in order, with one start time each: none repeated or skipped.
    entered = changes([(phase, step) for phase, step, _ in history])
    assert entered == [
        ("Pending", 0), ("Shadow", 0), ("Canary", 1), ("Canary", 2), ("Canary", 3),
        ("Promoting", 3), ("Succeeded", 3),
    ], history  # fmt: skip
    assert len(history) == len(entered), history
    # Step 1 kept its start time across the restart and ran its 8 s, not 8 s + the downtime.
    assert [started for _, step, started in history if step == 1] == [at_10["stepStartedAt"]]
    step1 = parse_time(at_10["stepStartedAt"])
    step2 = parse_time(next(started for _, step, started in history if step == 2))
    assert restarted_at < step1 + 8, "the restarted operator must be the one that ends step 1"
    assert killed_at < step1 + 8 < step2 < step1 + 8 + 1.5, (step1, killed_at, restarted_at, step2)
    assert final["step"] == 3
    assert operator.starts == 2


def test_prometheus_unreachable_holds_or_rolls_back_by_policy(
    make_bed: Callable[[], Bed], start_operator: Callable[..., OperatorProcess]
) -> None:
    hold, rollback = make_bed(), make_bed()
    hold_rollouts = hold.record_rollouts()
    operator = start_operator(hold.namespace, rollback.namespace)
    dead = closed_port_url()
    steps = [{"shadow": {"duration": "2s"}}, {"weight": 10, "duration": "2s"}]
    hold.apply(rollout_manifest(NAME, dead, steps=steps, noData="hold"))
    rollback.apply(rollout_manifest(NAME, dead, steps=steps, noData="rollback", noDataLimit=3))

    # rollback: three rounds without data, then all traffic to stable with the reason.
    final = rollback.wait_phase(NAME, "RolledBack", 30, operator)
    reason = final["rollbackReason"]
    assert reason.startswith("no data for 3 analysis rounds (noData: rollback): "), reason
    assert "completion-rate" in reason
    assert "unreachable" in reason
    assert route_weights(rollback.route()) == (100, 0)
    assert (rollback.mirror() or {})["percent"] == 0
    assert {c["type"]: c["reason"] for c in final["conditions"]}["RolledBack"] == "NoData"

    # hold: long past its 2 s step, still in shadow, no promotion and no rollback.
    held = hold.wait_for(NAME, lambda s: s.get("counters", {}).get("noData", 0) >= 6, 30, operator)
    assert (held["phase"], held["step"]) == ("Shadow", 0)
    assert "holding: no data for completion-rate" in held["message"]
    assert held["counters"]["breaches"] == {
        "completion-rate": 0, "latency-p95-seconds": 0, "error-rate": 0,
        "shadow-makespan-regression": 0,
    }  # fmt: skip
    phases = {(s.obj.get("status") or {}).get("phase") for s in hold_rollouts.of(NAME)}
    assert phases - {None} == {"Pending", "Shadow"}
    assert route_weights(hold.route()) == (100, 0)
    health = {c["type"]: c for c in held["conditions"]}["Healthy"]
    assert (health["status"], health["reason"]) == ("Unknown", "NoData")


def test_semantically_invalid_rollouts_land_in_invalid_and_the_operator_goes_on(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    bed.add_scheduler("other", route=False)  # a Deployment and Service, but no GRPCRoute
    operator = start_operator(bed.namespace)
    url = bed.prometheus_url
    bed.apply(rollout_manifest("no-target", url, target="missing"))
    bed.apply(rollout_manifest("no-route", url, target="other", route="other"))
    steps = [{"shadow": {"duration": "1s"}}, {"weight": 50, "duration": "1s"}]
    bed.apply(rollout_manifest(NAME, url, steps=steps))

    no_target = bed.wait_phase("no-target", "Invalid", 30, operator)
    assert no_target["message"].startswith("spec.targetRef.name: "), no_target["message"]
    assert "missing" in no_target["message"]
    no_route = bed.wait_phase("no-route", "Invalid", 30, operator)
    assert no_route["message"].startswith("spec.routing.route: "), no_route["message"]
    assert "GRPCRoute" in no_route["message"]
    for status in (no_target, no_route):
        progressing = {c["type"]: c for c in status["conditions"]}["Progressing"]
        assert (progressing["status"], progressing["reason"]) == ("False", "InvalidSpec")

    bed.wait_phase(NAME, "Succeeded", 40, operator)
    assert operator.running
    assert bed.status("no-target")["phase"] == "Invalid"

    # A finished rollout stays finished: its target removed afterwards and a command that does
    # not apply are recorded, not turned into Invalid.
    bed.cluster.apps.delete_namespaced_deployment("scheduler", bed.namespace)
    assert bed.plugin("approve", NAME) == 0
    command = bed.rollout(NAME)["metadata"]["annotations"]["rollouts.scheduling.io/command"]
    done = bed.wait_for(NAME, lambda s: s.get("lastCommand") == command, 10, operator)
    assert done["phase"] == "Succeeded"
    warnings = [e for e in bed.events("no-route") if e["type"] == "Warning"]
    assert any(e["reason"] == "Invalid" for e in warnings), warnings


def test_deleting_a_rollout_mid_canary_restores_stable_routing(
    bed: Bed, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator(bed.namespace)
    steps = [{"shadow": {"duration": "1s"}}, {"weight": 25, "duration": "60s"}]
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=steps))
    # the weight follows once the candidate's pods have rolled to the canary track
    canary = lambda s: s.get("phase") == "Canary" and route_weights(bed.route()) == (75, 25)  # noqa: E731
    bed.wait_for(NAME, canary, 30, operator)
    assert bed.deployment("scheduler-candidate") is not None
    assert bed.rollout(NAME)["metadata"]["finalizers"] == ["rollouts.scheduling.io/restore-routing"]

    bed.cluster.custom.delete_namespaced_custom_object(
        "rollouts.scheduling.io", "v1alpha1", bed.namespace, "schedulerrollouts", NAME
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            bed.rollout(NAME)
        except ApiException as exc:
            if exc.status == 404:
                break
            raise
        time.sleep(0.1)
    else:
        raise AssertionError(f"rollout not deleted (finalizer kept?):\n{operator.tail()}")

    # the operator's canary Service goes with the rollout, so the route no longer names it
    assert route_weights(bed.route()) == (100, None)
    assert bed.deployment("scheduler-candidate") is None
    assert (bed.mirror() or {})["percent"] == 0
    stable = bed.deployment("scheduler")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] != CANDIDATE_IMAGE
