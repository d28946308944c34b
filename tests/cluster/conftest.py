"""Fixtures for the operator's tests against the real kube-apiserver.

``cluster`` bundles the Python API clients (admin) and stands in for what is not running here:
there is no kubelet and no controller-manager, so a Deployment never reports available pods by
itself — ``Cluster.make_available`` writes, through the status subresource, the status the
Deployment controller would report once every pod of the current spec is up. ``namespace`` gives
each test a fresh namespace (never deleted: without the namespace controller it would stay
Terminating). ``route_crds`` installs the real Gateway API and Istio CRDs (pinned in
tools/route-crds, with their validation) and the prometheus-operator stand-ins of ``tests/crds``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from testbed.kube import KubeControlPlane

CRD_DIR = Path(__file__).parent.parent / "crds"


@dataclass
class Cluster:
    plane: KubeControlPlane
    api: client.ApiClient
    apps: client.AppsV1Api
    core: client.CoreV1Api
    custom: client.CustomObjectsApi

    def create_deployment(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str],
        replicas: int = 3,
        containers: list[dict[str, Any]] | None = None,
    ) -> None:
        containers = containers or [{"name": "scheduler", "image": "scheduler:1.0"}]
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
            },
        }
        self.apps.create_namespaced_deployment(namespace, client.V1Deployment.model_validate(body))

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """The Deployment as the API server has it, as plain JSON (camelCase keys)."""
        dep = self.apps.read_namespaced_deployment(name, namespace)
        return self.api.sanitize_for_serialization(dep)

    def make_available(self, namespace: str, name: str) -> None:
        """Pretend the kubelet started every pod of the current spec: write the status that the
        Deployment controller would (observed generation, all replicas updated and available)."""
        dep = self.apps.read_namespaced_deployment(name, namespace)
        n = dep.spec.replicas
        status = {
            "observedGeneration": dep.metadata.generation,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
        self.apps.patch_namespaced_deployment_status(name, namespace, {"status": status})


def cluster_of(kube: KubeControlPlane) -> Cluster:
    api = config.new_client_from_config(config_file=str(kube.admin_kubeconfig))
    return Cluster(
        kube, api, client.AppsV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api)
    )


@pytest.fixture(scope="session")
def cluster(kube: KubeControlPlane) -> Cluster:
    return cluster_of(kube)


@pytest.fixture(scope="session")
def route_crds(cluster: Cluster) -> None:
    cluster.plane.install_route_crds()
    cluster.plane.kubectl("apply", "-f", str(CRD_DIR))


@pytest.fixture()
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
