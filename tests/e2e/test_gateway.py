"""Through the real gateway: Traefik v3 routes the GRPCRoute's weights to real pods, writes the
route's conditions, and the operator counts a weight only once Traefik accepted it."""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
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
def quiet_plant(make_plant: Callable[..., Plant]) -> Plant:
    """A plant whose own clients stay silent: the test's calls are the only ones Traefik sees."""
    return make_plant(rate=0)


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


def test_traefik_splits_calls_by_the_routes_weights(quiet_plant: Plant) -> None:
    plant, platform = quiet_plant, quiet_plant.platform
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


def test_a_rollout_through_traefik_waits_for_its_acceptance(
    make_plant: Callable[..., Plant],
) -> None:
    plant = make_plant()
    platform = plant.platform
    since = time.time()
    plant.start_operator()
    plant.apply(example_rollout("through-traefik", platform.prometheus.url, step_s=3, interval_s=1))
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
    clients = plant.traffic.outcomes(since)
    failed = [o for o in clients if not o.ok]
    assert clients and not failed, failed[:5]  # no call failed through the gateway
    tracks = Counter(o.track for o in clients)
    assert set(tracks) == {"stable", "canary"}, tracks  # the weights reached clients via Traefik
    # the shadow step's copies came from the stable pods, by the canary Service's DNS name
    assert plant.shadow_answers() > 0
