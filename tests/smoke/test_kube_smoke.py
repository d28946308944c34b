"""The real kube-apiserver + etcd: objects written with one client are read back with the other."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from testbed.kube import KubeControlPlane, KubectlError

pytestmark = [pytest.mark.smoke, pytest.mark.cluster]

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.scheduling.io"},
    "spec": {
        "group": "smoke.scheduling.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "weight": {"type": "integer", "minimum": 0, "maximum": 100}
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def api_client(plane: KubeControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(plane.admin_kubeconfig))


def wait_established(api: client.ApiClient, name: str, timeout: float = 30.0) -> None:
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {name} not Established after {timeout}s")


def test_namespace_created_with_kubectl_is_read_by_python_client(kube: KubeControlPlane) -> None:
    kube.kubectl("create", "namespace", "smoke-kubectl")
    ns = client.CoreV1Api(api_client(kube)).read_namespace("smoke-kubectl")
    assert ns.metadata.name == "smoke-kubectl"
    assert ns.status.phase == "Active"


def test_namespace_created_with_python_client_is_read_by_kubectl(kube: KubeControlPlane) -> None:
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name="smoke-python", labels={"a": "b"}))
    client.CoreV1Api(api_client(kube)).create_namespace(body)
    got = json.loads(kube.kubectl("get", "namespace", "smoke-python", "-o", "json"))
    assert got["metadata"]["labels"]["a"] == "b"


def test_crd_roundtrip_validation_and_pruning(kube: KubeControlPlane) -> None:
    api = api_client(kube)
    client.ApiextensionsV1Api(api).create_custom_resource_definition(WIDGET_CRD)
    wait_established(api, "widgets.smoke.scheduling.io")
    listed = json.loads(kube.kubectl("get", "crd", "widgets.smoke.scheduling.io", "-o", "json"))
    assert listed["spec"]["names"]["kind"] == "Widget"

    kube.kubectl("create", "namespace", "smoke-crd")
    manifest = {
        "apiVersion": "smoke.scheduling.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "smoke-crd"},
        "spec": {"weight": 25, "unknownField": "pruned by the structural schema"},
    }
    # The Python client does not ask for strict field validation: the server prunes silently.
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "smoke.scheduling.io", "v1", "smoke-crd", "widgets", manifest
    )
    widget = json.loads(kube.kubectl("get", "widget", "w1", "-n", "smoke-crd", "-o", "json"))
    assert widget["spec"] == {"weight": 25}

    # kubectl asks for strict validation: unknown fields and out-of-range values are refused.
    with pytest.raises(KubectlError, match=r'unknown field "spec\.unknownField"'):
        kube.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    bad = {
        **manifest,
        "metadata": {"name": "w2", "namespace": "smoke-crd"},
        "spec": {"weight": 250},
    }
    with pytest.raises(KubectlError, match="less than or equal to 100"):
        kube.kubectl("apply", "-f", "-", stdin=json.dumps(bad))


def test_rbac_denies_an_unprivileged_user(kube: KubeControlPlane) -> None:
    nobody = kube.kubeconfig_for("nobody")
    assert kube.kubectl("auth", "can-i", "list", "namespaces").strip() == "yes"
    with pytest.raises(KubectlError, match="forbidden"):
        kube.kubectl("get", "namespaces", kubeconfig=nobody)
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(config.new_client_from_config(config_file=str(nobody))).list_namespace()
    assert err.value.status == 403
