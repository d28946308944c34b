"""The candidate Deployment and the canary Service against the real kube-apiserver.

No kubelet runs here: ``Cluster.make_available`` (conftest) writes the status a Deployment
controller would report once every pod of the current spec is up.
"""

from __future__ import annotations

from typing import Any

import pytest

from rollout_operator import services, workloads
from rollout_operator.model import CandidateSpec, Provider, RoutingSpec
from rollout_operator.workloads import CANDIDATE_LABEL, ROLLOUT_LABEL, WorkloadError
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

STABLE_LABELS = {"app": "scheduler", "track": "stable"}
CANDIDATE = CandidateSpec(
    image="scheduler:1.5.0", model_version="2026.11.1", env=(("LOG_LEVEL", "debug"),)
)
OWNER = {
    "apiVersion": "rollouts.scheduling.io/v1alpha1",
    "kind": "SchedulerRollout",
    "name": "r1",
    "uid": "00000000-0000-0000-0000-000000000001",
    "controller": True,
}
CONTAINERS = [
    {"name": "metrics-proxy", "image": "proxy:2"},
    {
        "name": "scheduler",
        "image": "scheduler:1.4.0",
        "env": [
            {"name": "SCHEDULER_TRACK", "value": "stable"},
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "SCHEDULER_MODEL_DIR", "value": "/models"},
        ],
    },
]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def containers(dep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}


@pytest.fixture()
def stable(cluster: Cluster, namespace: str) -> str:
    cluster.create_deployment(
        namespace, "scheduler", labels=STABLE_LABELS, replicas=3, containers=CONTAINERS
    )
    return namespace


def ensure(cluster: Cluster, namespace: str, track: str = "canary", **kw: Any) -> str:
    return workloads.ensure_candidate(
        cluster.apps, namespace, "scheduler", CANDIDATE, track, "r1", OWNER, **kw
    )


def test_candidate_is_made_from_the_stable_template(cluster: Cluster, stable: str) -> None:
    revision = ensure(cluster, stable)
    cand = cluster.deployment(stable, "scheduler-candidate")
    assert cand["spec"]["replicas"] == 0
    assert cand["spec"]["selector"] == {"matchLabels": {CANDIDATE_LABEL: "scheduler"}}
    assert cand["spec"]["template"]["metadata"]["labels"] == {
        "app": "scheduler",
        "track": "canary",
        CANDIDATE_LABEL: "scheduler",
        ROLLOUT_LABEL: "r1",
    }
    main = containers(cand)["scheduler"]
    assert main["image"] == "scheduler:1.5.0"
    assert env_of(main) == {
        "SCHEDULER_TRACK": "canary",
        "LOG_LEVEL": "debug",
        "SCHEDULER_MODEL_DIR": "/models",
        "MODEL_VERSION": "2026.11.1",
    }
    assert containers(cand)["metrics-proxy"]["image"] == "proxy:2"
    assert cand["metadata"]["annotations"][workloads.REVISION_ANNOTATION] == revision
    assert cand["metadata"]["ownerReferences"][0]["name"] == "r1"
    assert cand["metadata"]["labels"]["track"] == "canary"
    # the stable Deployment is not touched
    assert (
        containers(cluster.deployment(stable, "scheduler"))["scheduler"]["image"]
        == "scheduler:1.4.0"
    )


def test_ensure_is_idempotent_and_a_track_change_updates_in_place(
    cluster: Cluster, stable: str
) -> None:
    revision = ensure(cluster, stable, track="shadow")
    version = cluster.deployment(stable, "scheduler-candidate")["metadata"]["resourceVersion"]
    assert ensure(cluster, stable, track="shadow") == revision
    assert (
        cluster.deployment(stable, "scheduler-candidate")["metadata"]["resourceVersion"] == version
    )

    workloads.scale_candidate(cluster.apps, stable, "scheduler", 1)
    canary = ensure(cluster, stable, track="canary")
    assert canary != revision
    cand = cluster.deployment(stable, "scheduler-candidate")
    assert cand["spec"]["replicas"] == 1  # kept: the router sizes it
    assert env_of(containers(cand)["scheduler"])["SCHEDULER_TRACK"] == "canary"
    assert cand["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert ensure(cluster, stable, track="canary", replicas=2) == canary
    assert cluster.deployment(stable, "scheduler-candidate")["spec"]["replicas"] == 2


def test_shadow_pods_are_hidden_from_the_stable_service(cluster: Cluster, stable: str) -> None:
    # replica-ratio style: the stable Service selects app=scheduler, which canary pods keep
    ensure(cluster, stable, track="canary", hide_from={"app": "scheduler"})
    labels = cluster.deployment(stable, "scheduler-candidate")["spec"]["template"]["metadata"]
    assert labels["labels"]["app"] == "scheduler"
    # ... but shadow pods must never answer real clients
    ensure(cluster, stable, track="shadow", hide_from={"app": "scheduler"})
    labels = cluster.deployment(stable, "scheduler-candidate")["spec"]["template"]["metadata"]
    assert "app" not in labels["labels"]
    assert labels["labels"]["track"] == "shadow"
    # a Service that selects track=stable never matches them anyway: nothing is dropped
    ensure(cluster, stable, track="shadow", hide_from=STABLE_LABELS)
    labels = cluster.deployment(stable, "scheduler-candidate")["spec"]["template"]["metadata"]
    assert labels["labels"]["app"] == "scheduler"


def test_candidate_availability_follows_status(cluster: Cluster, stable: str) -> None:
    ensure(cluster, stable)
    workloads.scale_candidate(cluster.apps, stable, "scheduler", 2)
    assert not workloads.candidate_available(cluster.apps, stable, "scheduler")
    cluster.make_available(stable, "scheduler-candidate")
    assert workloads.candidate_available(cluster.apps, stable, "scheduler")
    workloads.scale_candidate(cluster.apps, stable, "scheduler", 3)  # new generation
    assert not workloads.candidate_available(cluster.apps, stable, "scheduler")
    cluster.make_available(stable, "scheduler-candidate")
    assert workloads.candidate_available(cluster.apps, stable, "scheduler")


def test_promote_copies_image_and_env_into_stable(cluster: Cluster, stable: str) -> None:
    revision = ensure(cluster, stable)
    before = cluster.deployment(stable, "scheduler")
    cluster.make_available(stable, "scheduler")
    assert workloads.stable_available(cluster.apps, stable, "scheduler")

    new_revision = workloads.promote_stable(cluster.apps, stable, "scheduler")
    after = cluster.deployment(stable, "scheduler")
    main = containers(after)["scheduler"]
    assert main["image"] == "scheduler:1.5.0"
    assert env_of(main) == {
        "SCHEDULER_TRACK": "stable",
        "LOG_LEVEL": "debug",
        "SCHEDULER_MODEL_DIR": "/models",
        "MODEL_VERSION": "2026.11.1",
    }
    assert containers(after)["metrics-proxy"]["image"] == "proxy:2"
    assert after["spec"]["selector"] == before["spec"]["selector"]
    assert after["spec"]["template"]["metadata"]["labels"] == STABLE_LABELS
    assert after["metadata"]["annotations"][workloads.PROMOTED_ANNOTATION] == revision
    assert workloads.stable_revision(cluster.apps, stable, "scheduler") == new_revision
    assert not workloads.stable_available(cluster.apps, stable, "scheduler")
    cluster.make_available(stable, "scheduler")
    assert workloads.stable_available(cluster.apps, stable, "scheduler")

    generation = after["metadata"]["generation"]
    assert workloads.promote_stable(cluster.apps, stable, "scheduler") == new_revision
    assert cluster.deployment(stable, "scheduler")["metadata"]["generation"] == generation


def test_scale_down_keeps_the_candidate_and_remove_deletes_it(
    cluster: Cluster, stable: str
) -> None:
    ensure(cluster, stable, replicas=2)
    workloads.scale_down_candidate(cluster.apps, stable, "scheduler")
    assert cluster.deployment(stable, "scheduler-candidate")["spec"]["replicas"] == 0
    workloads.remove_candidate(cluster.apps, stable, "scheduler")
    names = [d.metadata.name for d in cluster.apps.list_namespaced_deployment(stable).items]
    assert names == ["scheduler"]
    workloads.remove_candidate(cluster.apps, stable, "scheduler")  # idempotent
    workloads.scale_down_candidate(cluster.apps, stable, "scheduler")  # nothing left: fine
    with pytest.raises(WorkloadError, match="candidate Deployment"):
        workloads.promote_stable(cluster.apps, stable, "scheduler")


def test_missing_target_names_the_field(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(WorkloadError, match=f"Deployment {namespace}/scheduler not found") as err:
        ensure(cluster, namespace)
    assert err.value.field == "spec.targetRef.name"
    with pytest.raises(WorkloadError):
        workloads.stable_available(cluster.apps, namespace, "scheduler")


def test_a_foreign_deployment_with_the_candidate_name_is_not_taken_over(
    cluster: Cluster, stable: str
) -> None:
    cluster.create_deployment(stable, "scheduler-candidate", labels={"app": "other"})
    with pytest.raises(WorkloadError, match="not made by the rollout operator"):
        ensure(cluster, stable)


def test_canary_service_is_created_once_and_a_users_is_left_alone(
    cluster: Cluster, namespace: str
) -> None:
    routing = RoutingSpec(Provider.GATEWAY_API, "scheduler", "scheduler", "scheduler-canary")
    with pytest.raises(services.ServiceError, match=r"Service .*/scheduler not found") as err:
        services.ensure_canary_service(cluster.core, namespace, routing, "scheduler", OWNER)
    assert err.value.field == "spec.routing.stableService"
    ports = [
        {
            "name": "grpc",
            "port": 50051,
            "targetPort": 50051,
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
    ]
    cluster.core.create_namespaced_service(
        namespace,
        {"metadata": {"name": "scheduler"}, "spec": {"selector": STABLE_LABELS, "ports": ports}},
    )
    assert services.service_selector(cluster.core, namespace, "scheduler") == STABLE_LABELS
    assert services.ensure_canary_service(cluster.core, namespace, routing, "scheduler", OWNER)
    svc = cluster.core.read_namespaced_service("scheduler-canary", namespace)
    assert svc.spec.selector == {CANDIDATE_LABEL: "scheduler"}
    got = [cluster.api.sanitize_for_serialization(p) for p in svc.spec.ports]
    assert got == ports
    assert [o.name for o in svc.metadata.owner_references or []] == ["r1"]
    assert svc.spec.cluster_ip != "None"  # a ClusterIP stable gets a ClusterIP canary
    assert not services.ensure_canary_service(cluster.core, namespace, routing, "scheduler", OWNER)

    users = RoutingSpec(Provider.GATEWAY_API, "scheduler", "scheduler", "users-canary")
    cluster.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "users-canary"},
            "spec": {"selector": {"x": "y"}, "ports": ports[:1]},
        },
    )
    assert not services.ensure_canary_service(cluster.core, namespace, users, "scheduler", OWNER)
    assert cluster.core.read_namespaced_service("users-canary", namespace).spec.selector == {
        "x": "y"
    }


def test_a_headless_stable_service_gets_a_headless_canary_service(
    cluster: Cluster, namespace: str
) -> None:
    routing = RoutingSpec(Provider.GATEWAY_API, "scheduler", "scheduler", "scheduler-canary")
    spec = {"clusterIP": "None", "selector": STABLE_LABELS, "ports": [{"port": 50051}]}
    cluster.core.create_namespaced_service(
        namespace, {"metadata": {"name": "scheduler"}, "spec": spec}
    )
    assert services.ensure_canary_service(cluster.core, namespace, routing, "scheduler", OWNER)
    svc = cluster.core.read_namespaced_service("scheduler-canary", namespace)
    assert svc.spec.cluster_ip == "None"
    assert svc.spec.selector == {CANDIDATE_LABEL: "scheduler"}
