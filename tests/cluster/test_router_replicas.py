"""The replica-ratio router against the real kube-apiserver: replica counts per weight, the
stable's own count kept across 100 %, shadow with one pod and the application-level mirror."""

from __future__ import annotations

import pytest

from rollout_operator import workloads
from rollout_operator.mirror_config import get_mirror
from rollout_operator.model import CandidateSpec, Provider, RoutingSpec
from rollout_operator.routers import Router, RouterError, TrafficState, make_router
from rollout_operator.routers.replicas import STABLE_REPLICAS_ANNOTATION
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

ROUTING = RoutingSpec(Provider.REPLICAS, "", "scheduler", "scheduler-canary")


def replicas(cluster: Cluster, namespace: str) -> tuple[int, int]:
    stable = cluster.deployment(namespace, "scheduler")["spec"]["replicas"]
    return stable, cluster.deployment(namespace, "scheduler-candidate")["spec"]["replicas"]


def setup(cluster: Cluster, namespace: str, stable_replicas: int) -> Router:
    cluster.create_deployment(
        namespace, "scheduler", labels={"app": "scheduler"}, replicas=stable_replicas
    )
    workloads.ensure_candidate(
        cluster.apps, namespace, "scheduler", CandidateSpec(image="s:2"), "canary", "r1", None
    )
    return make_router(ROUTING, namespace, cluster.api, target="scheduler")


def test_weights_with_nine_stable_pods_are_exact(cluster: Cluster, namespace: str) -> None:
    router = setup(cluster, namespace, 9)
    for weight, expected in ((10, (9, 1)), (25, (9, 3)), (50, (9, 9)), (100, (0, 9)), (0, (9, 0))):
        router.set_traffic(weight, 0)
        assert replicas(cluster, namespace) == expected, weight
        assert router.get_traffic() == TrafficState(weight, 0)
    stable = cluster.deployment(namespace, "scheduler")
    assert STABLE_REPLICAS_ANNOTATION not in (stable["metadata"].get("annotations") or {})


def test_full_weight_remembers_the_stable_count(cluster: Cluster, namespace: str) -> None:
    router = setup(cluster, namespace, 3)
    router.set_traffic(100, 0)
    assert replicas(cluster, namespace) == (0, 3)
    annotations = cluster.deployment(namespace, "scheduler")["metadata"]["annotations"]
    assert annotations[STABLE_REPLICAS_ANNOTATION] == "3"
    assert router.get_traffic() == TrafficState(100, 0)
    router.restore()
    assert replicas(cluster, namespace) == (3, 0)
    assert router.get_traffic() == TrafficState(0, 0)


def test_coarse_ratio_reads_back_the_set_weight_until_someone_rescales(
    cluster: Cluster, namespace: str
) -> None:
    router = setup(cluster, namespace, 3)
    router.set_traffic(10, 0)
    assert replicas(cluster, namespace) == (3, 1)  # 25 % of the pods: as close as 3 allow
    assert router.get_traffic() == TrafficState(10, 0)
    workloads.scale_candidate(cluster.apps, namespace, "scheduler", 2)  # drift
    assert router.get_traffic() == TrafficState(40, 0)


def test_shadow_keeps_one_pod_and_mirrors_through_the_stable_pods(
    cluster: Cluster, namespace: str
) -> None:
    router = setup(cluster, namespace, 3)
    router.set_traffic(0, 100)
    assert replicas(cluster, namespace) == (3, 1)
    assert get_mirror(cluster.core, namespace, "scheduler-mirror") == {
        "target": "scheduler-canary:50051",
        "percent": 100,
        "timeout_ms": 30000,
    }
    assert router.get_traffic() == TrafficState(0, 100)
    router.restore()
    assert replicas(cluster, namespace) == (3, 0)
    assert (get_mirror(cluster.core, namespace, "scheduler-mirror") or {}).get("percent") == 0
    assert router.get_traffic() == TrafficState(0, 0)


def test_missing_deployments_are_errors_naming_them(cluster: Cluster, namespace: str) -> None:
    router = make_router(ROUTING, namespace, cluster.api, target="scheduler")
    with pytest.raises(RouterError, match=f"Deployment {namespace}/scheduler not found") as err:
        router.set_traffic(10, 0)
    assert err.value.field == "spec.targetRef.name"
    cluster.create_deployment(namespace, "scheduler", labels={"app": "scheduler"})
    with pytest.raises(RouterError, match="scheduler-candidate not found"):
        router.set_traffic(10, 0)
    router.restore()  # the finalizer may run after the candidate was removed
    assert cluster.deployment(namespace, "scheduler")["spec"]["replicas"] == 3


def test_route_mirror_is_refused(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(RouterError, match="cannot mirror on a route") as err:
        make_router(ROUTING, namespace, cluster.api, target="scheduler", route_mirror=True)
    assert err.value.field == "spec.routing.provider"
