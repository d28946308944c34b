"""Fault drills: whole rollouts on the e2e platform, with real scheduler processes answering real
calls, the operator as its own process, and faults injected where a platform team meets them.

Every drill asserts on what the API server holds (route weights, Deployments, the rollout's
status) and on what the plant's clients saw through the real gateway (Traefik): no call lost or
failed across any weight change or rollback, and every job asked for placed, except by a
candidate whose fault is the drill.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from rollout_operator.kubectl_plugin import main as schedrollout
from rollout_operator.resource import GROUP, PLURAL, VERSION
from testbed.e2e import E2EPlatform, Plant, example_rollout
from testbed.recorder import Recorder
from testbed.traffic import Outcome
from tests.e2e.conftest import MakePlant
from tests.operator.conftest import changes

pytestmark = pytest.mark.e2e

STEP_S = 3
INTERVAL_S = 1
TIMEOUT_S = 150.0
CANDIDATE = "scheduler-candidate"
CANARY_SVC = "scheduler-canary"
PLAN_WEIGHTS = [0, 10, 25, 50, 100, 0]  # shadow, 10, 25, 50, (approval), 100, promoted
RUNNING = ("Shadow", "Canary", "AwaitingApproval")
# From a route change in the API server to the gateway routing by it: Traefik's watch, its
# 0.2 s provider throttle and the reload (the operator counts a weight from Traefik's Accepted).
GATEWAY_LAG_S = 1.0
LATENCY_RULES = [
    {"name": "completion-rate", "below": 0.90, "for": 2},
    {"name": "latency-p95-seconds", "above": 1.0, "for": 2},
    {"name": "error-rate", "above": 0.05, "for": 2},
]

Obj = dict[str, Any]


# --- helpers ------------------------------------------------------------------------------------


def rollout(plant: Plant, name: str, *, faults: bool = False, **analysis: Any) -> Obj:
    """examples/rollout.yaml with 3 s steps and a 1 s analysis interval."""
    extra = {"SCHEDULER_ENABLE_FAULTS": "1"} if faults else None
    return example_rollout(
        name, plant.platform.prometheus.url, step_s=STEP_S, interval_s=INTERVAL_S,
        extra_env=extra, **analysis,
    )  # fmt: skip


def approve(plant: Plant, name: str) -> None:
    """The platform team's approval, through the CLI."""
    kubeconfig = str(plant.platform.kube.admin_kubeconfig)
    assert schedrollout(["--kubeconfig", kubeconfig, "-n", plant.namespace, "approve", name]) == 0


def run_to_end(plant: Plant, name: str, *, on_status: Callable[[Obj], None] | None = None) -> Obj:
    """Until a terminal phase, approving at the decision checkpoint."""
    approved = False

    def done(status: Obj) -> bool:
        nonlocal approved
        if on_status is not None:
            on_status(status)
        if status.get("phase") == "AwaitingApproval" and not approved:
            approve(plant, name)
            approved = True
        return status.get("phase") in ("Succeeded", "RolledBack", "Failed", "Invalid")

    return plant.wait_for(name, done, TIMEOUT_S, "a terminal phase")


def wait_weight(plant: Plant, name: str, weight: int) -> None:
    """Until the step of ``weight`` runs and the route carries it (the candidate's pods roll to
    the canary track first)."""
    plant.wait_for(
        name,
        lambda s: s.get("weight") == weight and plant.route().weight_of(CANARY_SVC) == weight,
        TIMEOUT_S,
        f"{weight}% in the route",
    )


def record_rollouts(plant: Plant) -> Recorder:
    custom = plant.platform.custom
    return Recorder(
        custom.list_namespaced_custom_object, GROUP, VERSION, plant.namespace, PLURAL
    ).start()


def assert_routed_to_stable(plant: Plant) -> None:
    """The API server's route sends everything to stable, and the gateway accepted it."""
    route = plant.wait_route_in_force()
    assert route.weight_of("scheduler") == 100 and route.weight_of(CANARY_SVC) == 0, route
    assert route.mirror is None, route


def assert_clients_served(outcomes: list[Outcome], *, faulty_until: float | None = None) -> None:
    """No client call failed or was lost; every job was placed, except in answers the faulty
    candidate gave before ``faulty_until``."""
    assert outcomes, "the clients sent nothing"
    failed = [o for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)} client calls failed or were lost: {failed[:5]}"
    incomplete = [o for o in outcomes if o.scheduled != o.jobs]
    if faulty_until is None:
        assert not incomplete, f"incomplete answers: {incomplete[:5]}"
    else:
        assert all(o.track == "canary" and o.sent <= faulty_until for o in incomplete), incomplete


def route_restored_at(plant: Plant) -> float:
    """When the API server's route last switched to 100% stable (epoch seconds)."""
    times = [t for t, view in plant.routes.history if view.weight_of(CANARY_SVC) == 0]
    assert times, "the route never went back to stable"
    return times[-1]


# --- drills --------------------------------------------------------------------------------------


def test_healthy_promotion(make_plant: MakePlant) -> None:
    plant = make_plant()
    plant.start_operator()
    since = time.time()
    plant.apply(rollout(plant, "healthy"))
    status = run_to_end(plant, "healthy")

    assert status["phase"] == "Succeeded", status
    assert_routed_to_stable(plant)
    assert plant.routes.weights() == PLAN_WEIGHTS
    assert plant.deployment(CANDIDATE) is None
    stable = plant.deployment("scheduler")
    assert stable is not None
    container = stable["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/scheduler:1.5.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SCHEDULER_DEFAULT_POLICY"] == "ppo" and env["SCHEDULER_TRACK"] == "stable"

    clients = plant.traffic.outcomes(since)
    assert_clients_served(clients)
    assert sum(o.track == "canary" for o in clients) > 20
    assert plant.shadow_answers() > 0, "the stable pods mirrored nothing to the shadow"
    assert not any(o.track == "shadow" for o in clients), "a shadow answer reached a client"

    # The promoted stable answers with the model: shorter schedules than the legacy rule.
    promoted = time.time()
    plant.platform.wait_endpoints(plant.namespace, "scheduler")
    time.sleep(3)
    after = [o for o in plant.traffic.outcomes(promoted) if o.ok]
    assert after and {o.track for o in after} == {"stable"}
    ratio = sum(o.makespan / o.baseline for o in after) / len(after)
    assert ratio < 1.0, f"promoted stable makespan / legacy {ratio:.3f}"


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"latency_ms": 2500}, "latency-p95-seconds"),
        ({"drop_job_fraction": 0.5}, "completion-rate"),
    ],
    ids=["latency", "completion-rate"],
)
def test_rollback_when_the_candidate_turns_bad_at_25_percent(
    make_plant: MakePlant, faults: dict[str, float], reason: str
) -> None:
    plant = make_plant()
    plant.start_operator()
    since = time.time()
    body = rollout(plant, "turns-bad", faults=True, rollback=LATENCY_RULES)
    body["spec"]["steps"][2]["duration"] = "120s"  # the fault comes during this step
    plant.apply(body)
    wait_weight(plant, "turns-bad", 25)
    plant.set_candidate_faults(**faults)
    status = plant.wait_phase("turns-bad", "RolledBack", 60)

    assert status["rollbackReason"].startswith(reason), status["rollbackReason"]
    rolled = next(c for c in status["conditions"] if c["type"] == "RolledBack")
    assert rolled["status"] == "True"
    assert_routed_to_stable(plant)
    candidate = plant.deployment(CANDIDATE)
    assert candidate is not None and candidate["spec"]["replicas"] == 0
    assert plant.routes.weights() == [0, 10, 25, 0]

    time.sleep(2)
    restored = route_restored_at(plant)
    clients = plant.traffic.outcomes(since)
    assert_clients_served(clients, faulty_until=restored + GATEWAY_LAG_S)
    assert not [o for o in clients if o.track == "canary" and o.sent > restored + GATEWAY_LAG_S]
    if "drop_job_fraction" in faults:
        assert any(o.scheduled < o.jobs for o in clients), "the fault never showed"


def test_operator_sigkilled_in_every_phase(make_plant: MakePlant) -> None:
    """Killed at a random moment of every phase and step, restarted 0.5 s later: every step
    runs once, in order, and the rollout finishes."""
    plant = make_plant()
    operator = plant.start_operator()
    recorder = record_rollouts(plant)
    rng = random.Random(7)
    killed: set[tuple[str, Any]] = set()

    def kill_once_per_phase(status: Obj) -> None:
        where = (status.get("phase"), status.get("step"))
        if where[0] in (None, "Succeeded") or where in killed:
            return
        killed.add(where)
        time.sleep(rng.uniform(0.0, 1.0))
        operator.kill()
        time.sleep(0.5)
        operator.start()

    plant.apply(rollout(plant, "restarts"))
    status = run_to_end(plant, "restarts", on_status=kill_once_per_phase)
    recorder.stop()

    assert status["phase"] == "Succeeded", status
    expected = {("Pending", 0), ("Shadow", 0), ("Canary", 1), ("Canary", 2), ("Canary", 3),
                ("AwaitingApproval", 4), ("Canary", 5), ("Promoting", 5)}  # fmt: skip
    assert expected <= killed, f"phases never killed in: {expected - killed}"
    statuses = [s.obj.get("status") or {} for s in recorder.of("restarts")]
    assert changes([s.get("phase") for s in statuses if s.get("phase")]) == [
        "Pending", "Shadow", "Canary", "AwaitingApproval", "Canary", "Promoting", "Succeeded",
    ]  # fmt: skip
    assert changes([s["step"] for s in statuses if "step" in s]) == [0, 1, 2, 3, 4, 5]
    started = {(s["step"], s["stepStartedAt"]) for s in statuses if s.get("phase") in RUNNING}
    per_step = [sum(1 for step, _ in started if step == i) for i in range(6)]
    assert per_step[:5] == [1, 1, 1, 1, 1], f"a step restarted: {sorted(started)}"
    assert_routed_to_stable(plant)
    assert plant.routes.weights() == PLAN_WEIGHTS
    assert_clients_served(plant.traffic.outcomes())


def test_prometheus_down_holds_the_step_then_the_rollout_resumes(
    make_plant: MakePlant, platform: E2EPlatform
) -> None:
    plant = make_plant()
    plant.start_operator()
    plant.apply(rollout(plant, "hold", noData="hold"))
    wait_weight(plant, "hold", 10)
    platform.prometheus.kill()
    try:
        time.sleep(3 * STEP_S)  # three times the step's duration, without data
        status = plant.status("hold")
        assert (status["phase"], status["step"], status["weight"]) == ("Canary", 1, 10), status
        assert status["counters"]["noData"] >= 3, status["counters"]
        assert plant.route().weight_of(CANARY_SVC) == 10
    finally:
        platform.prometheus.start()
    status = run_to_end(plant, "hold")
    assert status["phase"] == "Succeeded", status
    assert_routed_to_stable(plant)
    assert plant.routes.weights() == PLAN_WEIGHTS
    assert_clients_served(plant.traffic.outcomes())


def test_prometheus_down_rolls_back_under_the_rollback_policy(
    make_plant: MakePlant, platform: E2EPlatform
) -> None:
    plant = make_plant()
    plant.start_operator()
    # 8 rounds: the shadow comparison has no data until 20 mirrored answers (about 4 rounds)
    plant.apply(rollout(plant, "nodata", noData="rollback", noDataLimit=8))
    wait_weight(plant, "nodata", 10)
    platform.prometheus.kill()
    try:
        status = plant.wait_phase("nodata", "RolledBack", 30)
    finally:
        platform.prometheus.start()
    assert "no data" in status["rollbackReason"], status["rollbackReason"]
    assert_routed_to_stable(plant)
    assert plant.routes.weights() == [0, 10, 0]
    assert_clients_served(plant.traffic.outcomes())


def test_api_server_restarted_mid_rollout(make_plant: MakePlant, platform: E2EPlatform) -> None:
    plant = make_plant()
    operator = plant.start_operator()
    plant.apply(rollout(plant, "apiserver"))
    wait_weight(plant, "apiserver", 25)
    platform.kube.restart_apiserver()
    status = run_to_end(plant, "apiserver")
    assert status["phase"] == "Succeeded", status
    assert operator.running, "the operator died with the API server"
    assert_routed_to_stable(plant)
    assert plant.routes.weights() == PLAN_WEIGHTS
    assert_clients_served(plant.traffic.outcomes())


def test_deleting_the_rollout_mid_canary_restores_stable(make_plant: MakePlant) -> None:
    plant = make_plant()
    plant.start_operator()
    plant.apply(rollout(plant, "deleted"))
    wait_weight(plant, "deleted", 25)
    plant.delete("deleted")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and plant.rollout("deleted") is not None:
        time.sleep(0.2)
    assert plant.rollout("deleted") is None, "the finalizer never let the rollout go"
    assert_routed_to_stable(plant)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and plant.deployment(CANDIDATE) is not None:
        time.sleep(0.2)
    assert plant.deployment(CANDIDATE) is None
    time.sleep(2)
    restored = route_restored_at(plant)
    clients = plant.traffic.outcomes()
    assert_clients_served(clients)
    assert not [o for o in clients if o.track == "canary" and o.sent > restored + GATEWAY_LAG_S]


def test_the_next_rollout_is_judged_on_its_own_candidates_answers(make_plant: MakePlant) -> None:
    """A candidate with longer plans (EDD) is rolled back in shadow; the next one, started at
    once in the same namespace, reports under the same ``shadow`` track while the first one's
    answers still fill a whole analysis window. It must pass its shadow on its own answers."""
    plant = make_plant()
    plant.start_operator()
    worse = example_rollout(
        "edd", plant.platform.prometheus.url, step_s=STEP_S, interval_s=INTERVAL_S,
        extra_env={"SCHEDULER_DEFAULT_POLICY": "edd"},
    )  # fmt: skip
    worse["spec"]["steps"][0]["shadow"]["duration"] = "120s"  # caught in shadow
    plant.apply(worse)
    status = plant.wait_phase("edd", "RolledBack", TIMEOUT_S)
    assert status["rollbackReason"].startswith("shadow-makespan-regression"), status
    rolled_back = time.time()
    plant.apply(rollout(plant, "after-edd"))
    status = plant.wait_for(
        "after-edd", lambda s: s.get("phase") not in (None, "Pending", "Shadow"), TIMEOUT_S,
        "the end of shadow",
    )  # fmt: skip

    assert status["phase"] == "Canary", status
    began = {h["phase"]: h["at"] for h in status["history"]}
    shadow_began = datetime.fromisoformat(began["Shadow"]).timestamp()
    assert shadow_began - rolled_back < 60, "the first candidate's answers were not in a window"
    # Its pods took the canary track, a new template: their answers count from then on.
    assert status["analysedSince"] == began["Canary"], status


def test_two_rollouts_in_two_namespaces_at_once(make_plant: MakePlant) -> None:
    good, bad = make_plant(), make_plant()
    good.start_operator(bad.namespace)
    bad.operators.extend(good.operators)  # the same operator watches both
    bad.platform.node.set_faults(bad.namespace, CANDIDATE, latency_ms=2500)
    good.apply(rollout(good, "good", rollback=LATENCY_RULES))
    bad_body = rollout(bad, "bad", faults=True, rollback=LATENCY_RULES)
    bad_body["spec"]["steps"][0]["shadow"]["duration"] = "120s"  # caught in shadow
    bad.apply(bad_body)
    bad_status = bad.wait_phase("bad", "RolledBack", TIMEOUT_S)
    good_status = run_to_end(good, "good")

    assert good_status["phase"] == "Succeeded", good_status
    assert bad_status["rollbackReason"].startswith("latency-p95-seconds"), bad_status
    assert_routed_to_stable(good)
    assert good.routes.weights() == PLAN_WEIGHTS
    assert_routed_to_stable(bad)
    assert_clients_served(good.traffic.outcomes())
    assert_clients_served(bad.traffic.outcomes())  # the fault was in shadow: clients never saw it
