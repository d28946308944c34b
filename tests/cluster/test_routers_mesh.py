"""The GRPCRoute and VirtualService routers against the real kube-apiserver: weights and mirrors
read back exactly, only the router's own parts of the route change, errors name the resource."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rollout_operator.mirror_config import get_mirror
from rollout_operator.model import Provider, RoutingSpec
from rollout_operator.routers import Router, RouterError, TrafficState, make_router
from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("route_crds")]

Obj = dict[str, Any]
# What the real GRPCRoute schema defaults a backendRef to.
SERVICE_REF = {"group": "", "kind": "Service"}
HEADER_FILTER = {
    "type": "RequestHeaderModifier",
    "requestHeaderModifier": {"add": [{"name": "x-plant", "value": "north"}]},
}


def grpcroute(namespace: str) -> Obj:
    return {
        "parentRefs": [{"name": "plant-gateway"}],
        "hostnames": ["scheduler.plant.example"],
        "rules": [
            {
                "matches": [{"method": {"service": "scheduler.v1.Scheduler"}}],
                "filters": [copy.deepcopy(HEADER_FILTER)],
                "backendRefs": [{"name": "scheduler", "port": 50051}],
            },
            {
                "matches": [{"method": {"service": "grpc.health.v1.Health"}}],
                "backendRefs": [{"name": "health", "port": 50051, "weight": 7}],
            },
        ],
    }


def virtualservice(namespace: str) -> Obj:
    host = f"scheduler.{namespace}.svc.cluster.local"
    return {
        "hosts": ["scheduler"],
        "http": [
            {
                "name": "schedule",
                "match": [{"uri": {"prefix": "/scheduler.v1.Scheduler/"}}],
                "retries": {"attempts": 2},
                "route": [{"destination": {"host": host, "port": {"number": 50051}}}],
            },
            {"name": "other", "route": [{"destination": {"host": "other"}, "weight": 100}]},
        ],
    }


def grpc_weights(spec: Obj) -> tuple[int, int]:
    refs = {r["name"]: r.get("weight") for r in spec["rules"][0]["backendRefs"]}
    return refs["scheduler"], refs["scheduler-canary"]


def vs_weights(spec: Obj) -> tuple[int, int]:
    dests = {d["destination"]["host"].split(".")[0]: d["weight"] for d in spec["http"][0]["route"]}
    return dests["scheduler"], dests["scheduler-canary"]


def grpc_mirror(spec: Obj) -> Obj | None:
    mirrors = [f for f in spec["rules"][0].get("filters", []) if f["type"] == "RequestMirror"]
    assert len(mirrors) <= 1
    return mirrors[0]["requestMirror"] if mirrors else None


def vs_mirror(spec: Obj) -> Obj | None:
    http = spec["http"][0]
    if "mirror" not in http:
        assert "mirrorPercentage" not in http
        return None
    return {"mirror": http["mirror"], "mirrorPercentage": http.get("mirrorPercentage")}


def grpc_untouched(spec: Obj) -> Obj:
    """What the router does not own: everything but rule 0's backendRefs and RequestMirror."""
    rest = copy.deepcopy(spec)
    rule = rest["rules"][0]
    del rule["backendRefs"]
    rule["filters"] = [f for f in rule.get("filters", []) if f["type"] != "RequestMirror"]
    return rest


def vs_untouched(spec: Obj) -> Obj:
    rest = copy.deepcopy(spec)
    for key in ("route", "mirror", "mirrorPercentage"):
        rest["http"][0].pop(key, None)
    return rest


@dataclass(frozen=True)
class Mesh:
    provider: Provider
    group: str
    version: str
    plural: str
    kind: str
    spec: Callable[[str], Obj]
    weights: Callable[[Obj], tuple[int, int]]
    mirror: Callable[[Obj], Obj | None]
    untouched: Callable[[Obj], Obj]


GATEWAY = Mesh(
    Provider.GATEWAY_API,
    "gateway.networking.k8s.io",
    "v1",
    "grpcroutes",
    "GRPCRoute",
    grpcroute,
    grpc_weights,
    grpc_mirror,
    grpc_untouched,
)
ISTIO = Mesh(
    Provider.ISTIO,
    "networking.istio.io",
    "v1",
    "virtualservices",
    "VirtualService",
    virtualservice,
    vs_weights,
    vs_mirror,
    vs_untouched,
)


@dataclass
class Setup:
    mesh: Mesh
    cluster: Cluster
    namespace: str
    routing: RoutingSpec

    def create_route(self, spec: Obj | None = None) -> None:
        m = self.mesh
        body = {
            "apiVersion": f"{m.group}/{m.version}",
            "kind": m.kind,
            "metadata": {"name": self.routing.route},
            "spec": spec if spec is not None else m.spec(self.namespace),
        }
        self.cluster.custom.create_namespaced_custom_object(
            m.group, m.version, self.namespace, m.plural, body
        )

    def route(self) -> Obj:
        m = self.mesh
        obj: Obj = self.cluster.custom.get_namespaced_custom_object(
            m.group, m.version, self.namespace, m.plural, self.routing.route
        )  # type: ignore[assignment]  # the client types custom objects as `object`
        return obj

    def router(self, *, route_mirror: bool = False) -> Router:
        return make_router(
            self.routing,
            self.namespace,
            self.cluster.api,
            target="scheduler",
            route_mirror=route_mirror,
        )

    def app_mirror(self) -> Obj:
        data = get_mirror(self.cluster.core, self.namespace, "scheduler-mirror")
        assert data is not None, "the mirror ConfigMap was never written"
        return data


@pytest.fixture(params=[GATEWAY, ISTIO], ids=lambda m: m.provider.value)
def mesh(request: pytest.FixtureRequest, cluster: Cluster, namespace: str) -> Setup:
    routing = RoutingSpec(
        provider=request.param.provider,
        route="scheduler",
        stable_service="scheduler",
        canary_service="scheduler-canary",
    )
    setup = Setup(request.param, cluster, namespace, routing)
    setup.create_route()
    return setup


@pytest.mark.parametrize("weight", [10, 25, 50, 100, 0])
def test_weight_reads_back_exactly(mesh: Setup, weight: int) -> None:
    before = mesh.route()["spec"]
    router = mesh.router()
    router.set_traffic(weight, 0)
    after = mesh.route()["spec"]
    assert mesh.mesh.weights(after) == (100 - weight, weight)
    assert router.get_traffic() == TrafficState(weight, 0)
    assert mesh.mesh.mirror(after) is None
    assert mesh.mesh.untouched(after) == mesh.mesh.untouched(before)


def test_the_plan_in_order_then_an_unchanged_step_writes_nothing(mesh: Setup) -> None:
    router = mesh.router()
    for weight in (10, 25, 50, 100, 0):
        router.set_traffic(weight, 0)
        assert router.get_traffic() == TrafficState(weight, 0)
        assert mesh.mesh.weights(mesh.route()["spec"]) == (100 - weight, weight)
    version = mesh.route()["metadata"]["resourceVersion"]
    router.set_traffic(0, 0)
    assert mesh.route()["metadata"]["resourceVersion"] == version


def test_route_mirror_on_percent_and_off(mesh: Setup) -> None:
    router = mesh.router(route_mirror=True)
    ns = mesh.namespace
    router.set_traffic(0, 100)
    spec = mesh.route()["spec"]
    assert mesh.mesh.weights(spec) == (100, 0)
    assert router.get_traffic() == TrafficState(0, 100)
    if mesh.mesh is GATEWAY:
        # 100 %: no percent field (the Gateway API default mirrors everything)
        canary = {**SERVICE_REF, "name": "scheduler-canary", "port": 50051}
        assert grpc_mirror(spec) == {"backendRef": canary}
        assert spec["rules"][0]["filters"][0] == HEADER_FILTER
    else:
        host = f"scheduler-canary.{ns}.svc.cluster.local"
        assert vs_mirror(spec) == {
            "mirror": {"host": host, "port": {"number": 50051}},
            "mirrorPercentage": {"value": 100},
        }

    router.set_traffic(0, 10)
    spec = mesh.route()["spec"]
    assert router.get_traffic() == TrafficState(0, 10)
    if mesh.mesh is GATEWAY:
        assert grpc_mirror(spec) == {"backendRef": canary, "percent": 10}
    else:
        assert (vs_mirror(spec) or {}).get("mirrorPercentage") == {"value": 10}
    # route mirroring switches the application-level mirror off: the shadow never gets two copies
    assert mesh.app_mirror() == {"target": None, "percent": 0, "timeout_ms": 30000}

    router.set_traffic(10, 0)
    spec = mesh.route()["spec"]
    assert mesh.mesh.mirror(spec) is None
    assert mesh.mesh.weights(spec) == (90, 10)
    assert router.get_traffic() == TrafficState(10, 0)
    if mesh.mesh is GATEWAY:
        assert spec["rules"][0]["filters"] == [HEADER_FILTER]


def test_default_mirror_is_the_application_config_map(mesh: Setup) -> None:
    router = mesh.router()
    router.set_traffic(0, 100)
    assert mesh.mesh.mirror(mesh.route()["spec"]) is None
    assert mesh.app_mirror() == {
        "target": "scheduler-canary:50051",
        "percent": 100,
        "timeout_ms": 30000,
    }
    assert router.get_traffic() == TrafficState(0, 100)
    router.set_traffic(25, 0)
    assert mesh.app_mirror()["percent"] == 0
    assert router.get_traffic() == TrafficState(25, 0)


def test_restore_sends_everything_to_stable_and_stops_mirroring(mesh: Setup) -> None:
    before = mesh.route()["spec"]
    router = mesh.router(route_mirror=True)
    router.set_traffic(50, 50)
    assert router.get_traffic() == TrafficState(50, 50)
    router.restore()
    spec = mesh.route()["spec"]
    assert mesh.mesh.weights(spec) == (100, 0)
    assert mesh.mesh.mirror(spec) is None
    assert router.get_traffic() == TrafficState(0, 0)
    assert mesh.mesh.untouched(spec) == mesh.mesh.untouched(before)
    assert mesh.app_mirror()["percent"] == 0


def test_restore_drops_the_candidate_backend_when_asked(mesh: Setup) -> None:
    """The operator's canary Service goes with the rollout: the restored route stops naming it
    (a gateway would report the dangling backend), and is otherwise as before."""
    before = mesh.route()["spec"]
    router = mesh.router()
    router.set_traffic(25, 0)
    router.restore(drop_candidate=True)
    spec = mesh.route()["spec"]
    if mesh.mesh is GATEWAY:
        names = [r["name"] for r in spec["rules"][0]["backendRefs"]]
    else:
        names = [d["destination"]["host"].split(".")[0] for d in spec["http"][0]["route"]]
    assert names == ["scheduler"]
    assert mesh.mesh.untouched(spec) == mesh.mesh.untouched(before)
    router.set_traffic(10, 0)  # the next rollout adds it back
    assert mesh.mesh.weights(mesh.route()["spec"]) == (90, 10)


def test_a_foreign_mirror_and_other_backends_are_left_alone(mesh: Setup) -> None:
    spec = mesh.mesh.spec(mesh.namespace)
    if mesh.mesh is GATEWAY:
        audit = {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "audit", "port": 9}},
        }
        spec["rules"][0]["filters"].append(audit)
    else:
        spec["http"][1]["mirror"] = {"host": "audit"}
    mesh.cluster.custom.delete_namespaced_custom_object(
        mesh.mesh.group, mesh.mesh.version, mesh.namespace, mesh.mesh.plural, "scheduler"
    )
    mesh.create_route(spec)
    created = mesh.route()["spec"]  # with the defaults the CRD's schema adds
    router = mesh.router(route_mirror=True)
    router.set_traffic(0, 30)
    router.restore()
    after = mesh.route()["spec"]
    if mesh.mesh is GATEWAY:
        assert after["rules"][0]["filters"] == created["rules"][0]["filters"]
        assert after["rules"][0]["filters"][1]["requestMirror"]["backendRef"]["name"] == "audit"
        assert after["rules"][1] == created["rules"][1]
    else:
        assert after["http"][1] == created["http"][1]


def test_missing_route_is_an_error_naming_it_and_restore_tolerates_it(
    cluster: Cluster, namespace: str, route_crds: None
) -> None:
    for mesh, kind in ((GATEWAY, "GRPCRoute"), (ISTIO, "VirtualService")):
        routing = RoutingSpec(mesh.provider, "no-such-route", "scheduler", "scheduler-canary")
        router = make_router(routing, namespace, cluster.api, target="scheduler")
        for call in (lambda r=router: r.set_traffic(10, 0), router.get_traffic):
            with pytest.raises(RouterError) as err:
                call()
            assert f"{kind} {namespace}/no-such-route not found" in str(err.value)
            assert err.value.field == "spec.routing.route"
            assert err.value.resource == f"{kind} {namespace}/no-such-route"
        router.restore()  # nothing to restore on a route that is gone; the mirror goes off
        mirror = get_mirror(cluster.core, namespace, "scheduler-mirror")
        assert mirror is not None and mirror["percent"] == 0


def test_route_without_the_stable_service_names_the_field(mesh: Setup) -> None:
    routing = RoutingSpec(mesh.mesh.provider, "scheduler", "legacy", "scheduler-canary")
    router = make_router(routing, mesh.namespace, mesh.cluster.api, target="scheduler")
    before = mesh.route()
    with pytest.raises(RouterError, match="'legacy'") as err:
        router.set_traffic(10, 0)
    assert err.value.field == "spec.routing.stableService"
    assert mesh.route()["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_out_of_range_numbers_are_refused_before_any_write(mesh: Setup) -> None:
    router = mesh.router()
    before = mesh.route()
    for weight, mirror in ((101, 0), (-1, 0), (10, 150)):
        with pytest.raises(ValueError, match="0 to 100"):
            router.set_traffic(weight, mirror)
    assert mesh.route()["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_acceptance_reads_the_gateways_conditions_on_the_real_route(mesh: Setup) -> None:
    """The gateway's part (writing route status) is played by the test: a rejection is a fault
    no gateway of this platform produces on demand."""
    router = mesh.router()
    if mesh.mesh is not GATEWAY:
        assert router.acceptance().state == "NotReported"  # Istio writes no such conditions
        return
    assert router.acceptance().state == "NotReported"
    router.set_traffic(10, 0)
    generation = mesh.route()["metadata"]["generation"]

    def report(observed: int, resolved: str) -> None:
        conditions = [
            {"type": type_, "status": status, "reason": reason, "message": message,
             "observedGeneration": observed, "lastTransitionTime": "2026-12-05T00:00:00Z"}
            for type_, status, reason, message in (
                ("Accepted", "True", "Accepted", "ok"),
                ("ResolvedRefs", resolved, "BackendNotFound" if resolved == "False" else
                 "ResolvedRefs", "service scheduler-canary not found"),
            )
        ]  # fmt: skip
        parent = {"parentRef": {"name": "plant-gateway"},
                  "controllerName": "example.net/gateway", "conditions": conditions}  # fmt: skip
        m = mesh.mesh
        mesh.cluster.custom.patch_namespaced_custom_object_status(
            m.group, m.version, mesh.namespace, m.plural, mesh.routing.route,
            {"status": {"parents": [parent]}},
        )  # fmt: skip

    report(generation - 1, "True")
    assert router.acceptance().state == "Pending"
    report(generation, "False")
    rejected = router.acceptance()
    assert rejected.state == "Rejected" and "BackendNotFound" in rejected.message
    report(generation, "True")
    assert router.acceptance().state == "Accepted"
    router.set_traffic(25, 0)  # a new generation: pending again until the gateway reports it
    assert router.acceptance().state == "Pending"
