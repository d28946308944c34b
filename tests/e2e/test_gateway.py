"""Through the real gateway: Traefik v3 routes the GRPCRoute's weights to real pods, writes the
route's conditions, and the operator counts a weight only once Traefik accepted it."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from jobshop_scheduler.api import pb, pb_grpc
from jobshop_scheduler.service.auth import API_KEY_HEADER
from rollout_operator.routers import make_router
from rollout_operator.spec import parse_spec
from testbed.e2e import PORT, E2EPlatform, Plant, example_rollout, plant_host
from testbed.gateway import CONTROLLER
from testbed.traffic import taillard_requests
from tests.e2e.conftest import until

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
POLICIES = {"mwkr", "ppo"}  # the stable answers with the legacy rule, the candidate with PPO


@pytest.fixture()
def gateway_plant(platform: E2EPlatform, make_plant: Callable[..., Plant]) -> Iterator[Plant]:
    plant = make_plant(gateway=True)
    until(lambda: _route_accepted(plant), 30, "the plant's route accepted by Traefik")
    yield plant


def _route_accepted(plant: Plant) -> bool:
    route = plant.platform.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", plant.namespace, "grpcroutes", "scheduler"
    )
    generation = route["metadata"]["generation"]  # type: ignore[index]
    parents = (route.get("status") or {}).get("parents") or []  # type: ignore[attr-defined]
    return any(
        c["type"] == "Accepted" and c["status"] == "True" and c["observedGeneration"] == generation
        for p in parents
        for c in p["conditions"]
    )


def _stub(plant: Plant) -> Any:
    """A client of the plant's route through Traefik (its host name picks the route)."""
    assert plant.platform.gateway is not None
    options = [("grpc.default_authority", plant_host(plant.namespace))]
    channel = grpc.insecure_channel(plant.platform.gateway.address, options=options)
    return pb_grpc.SchedulerStub(channel)


def _call(platform: E2EPlatform, stub: Any, request: pb.ScheduleRequest) -> str:
    """One call through the gateway; the policy that answered (the stable runs MWKR, the
    candidate PPO), or the gRPC code's name."""
    try:
        answer = stub.Schedule(request, metadata=((API_KEY_HEADER, platform.api_key),), timeout=30)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return str(answer.policy_used)


def _canary(plant: Plant) -> None:
    """A second Deployment (PPO, track canary) and its Service, as a candidate would have."""
    stable = plant.deployment("scheduler")
    assert stable is not None
    template = copy.deepcopy(stable["spec"]["template"])
    template["metadata"]["labels"]["track"] = "canary"
    container = template["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "SCHEDULER_DEFAULT_POLICY"]
    container["env"].append({"name": "SCHEDULER_DEFAULT_POLICY", "value": "ppo"})
    labels = {"app": "scheduler", "track": "canary"}
    plant.platform.apps.create_namespaced_deployment(
        plant.namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "scheduler-canary"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
        },
    )
    plant.platform.core.create_namespaced_service(
        plant.namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "scheduler-canary"},
            "spec": {"selector": labels, "ports": [{"name": "grpc", "port": PORT}]},
        },
    )
    plant.platform.wait_endpoints(plant.namespace, "scheduler-canary")


def test_traefik_splits_calls_by_the_routes_weights(gateway_plant: Plant) -> None:
    plant, platform = gateway_plant, gateway_plant.platform
    _canary(plant)
    spec = parse_spec(example_rollout("split", platform.prometheus.url)["spec"])
    router = make_router(spec.routing, plant.namespace, platform.api, target="scheduler")
    router.set_traffic(10, 0)
    verdict = until(
        lambda: (v := router.acceptance()).state == "Accepted" and v, 30, "weights accepted"
    )
    assert CONTROLLER in verdict.message
    stub = _stub(plant)
    requests = taillard_requests(7)
    # Traefik reports a route Accepted as it builds the configuration and applies it after its
    # provider throttle: the split starts with the first candidate answer
    until(lambda: _call(platform, stub, next(requests)) == "ppo", 30, "a candidate answer")
    answered = Counter(_call(platform, stub, next(requests)) for _ in range(200))
    # smooth weighted round robin: 90/10 of 200 calls, give or take the first pick
    assert abs(answered["mwkr"] - 180) <= 2 and abs(answered["ppo"] - 20) <= 2, answered


def test_a_rollout_through_traefik_waits_for_its_acceptance(gateway_plant: Plant) -> None:
    plant, platform = gateway_plant, gateway_plant.platform
    stub = _stub(plant)
    seen: list[str] = []
    timeline: list[tuple[float, str]] = []
    stop = threading.Event()

    def clients() -> None:  # the plant's clients, calling the gateway's address
        requests = taillard_requests(11)
        while not stop.wait(0.2):
            seen.append(_call(platform, stub, next(requests)))
            timeline.append((time.time(), seen[-1]))

    body = example_rollout("through-traefik", platform.prometheus.url, step_s=3, interval_s=1)
    # Traefik implements no RequestMirror filter, and the app-level mirror calls the canary
    # Service by its DNS name, which this platform (no cluster DNS, no kube-proxy) cannot
    # resolve: the rollout starts at its first weight step
    body["spec"]["steps"] = [s for s in body["spec"]["steps"] if "shadow" not in s]
    body["spec"]["routing"]["mirror"] = "app"
    plant.start_operator()
    caller = threading.Thread(target=clients, daemon=True)
    caller.start()
    try:
        plant.apply(body)
        accepted = plant.wait_for(
            "through-traefik",
            lambda s: any(
                c["type"] == "RouteAccepted" and c["status"] == "True"
                for c in s.get("conditions") or []
            ),
            120,
            "condition RouteAccepted True",
        )
        condition = next(c for c in accepted["conditions"] if c["type"] == "RouteAccepted")
        assert CONTROLLER in condition["message"]
        final = plant.wait_for(
            "through-traefik",
            lambda s: s.get("phase") in ("AwaitingApproval", "Succeeded", "RolledBack", "Failed"),
            180,
            "the approval gate",
        )
        assert final["phase"] == "AwaitingApproval", final
    finally:
        stop.set()
        caller.join(timeout=35)
    answered = Counter(seen)
    failed = [(round(t - timeline[0][0], 1), code) for t, code in timeline if code not in POLICIES]
    assert set(answered) <= POLICIES, (answered, failed)  # no call failed through the gateway
    assert answered["ppo"] > 0, answered  # the candidate's weights reached clients via Traefik
