"""The platform's own parts: the node the real scheduler binds to, and the real controllers'
work on it (a Job to completion, a deleted pod replaced and its process stopped)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from testbed.e2e import E2EPlatform
from testbed.node import NODE_NAME, POD_CIDR
from tests.e2e.conftest import until

pytestmark = pytest.mark.e2e


def test_the_node_is_ready_untainted_and_renews_its_lease(platform: E2EPlatform) -> None:
    node = platform.core.read_node(NODE_NAME)
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"
    # the node-lifecycle controller would taint a node whose heartbeats it does not see
    assert not [t for t in node.spec.taints or [] if "not-ready" in t.key or "unreach" in t.key]
    leases = client.CoordinationV1Api(platform.api)

    def renewed() -> str:
        return str(leases.read_namespaced_lease(NODE_NAME, "kube-node-lease").spec.renew_time)

    first = renewed()
    until(lambda: renewed() != first, 15, "a lease renewal")


def test_a_job_runs_to_completion_through_the_real_job_controller(platform: E2EPlatform) -> None:
    namespace = f"job-{uuid.uuid4().hex[:6]}"
    platform.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    container = {
        "name": "check",
        "image": "registry.example/scheduler:1.4.0",
        "command": ["python3", "-c", "import os; print('pod', os.environ['POD_IP'])"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "check"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    client.BatchV1Api(platform.api).create_namespaced_job(namespace, job)
    done = until(
        lambda: (
            client.BatchV1Api(platform.api)
            .read_namespaced_job(namespace=namespace, name="check")
            .status.succeeded
        ),
        60,
        "Job succeeded",
    )
    assert done == 1
    pods = platform.core.list_namespaced_pod(namespace, label_selector="job-name=check").items
    assert [p.status.phase for p in pods] == ["Succeeded"]
    assert pods[0].spec.node_name == NODE_NAME  # bound by the real kube-scheduler
    assert pods[0].status.pod_ip.startswith(POD_CIDR.split(".0.0/")[0])
    log = platform.workdir / "pods" / namespace / f"{pods[0].metadata.name}.log"
    assert log.read_text().strip() == f"pod {pods[0].status.pod_ip}"
    platform.core.delete_namespace(namespace)


def test_a_deleted_pod_is_replaced_and_its_process_stops(make_plant: Callable[..., Any]) -> None:
    plant = make_plant()
    platform: E2EPlatform = plant.platform
    before = platform.ready_endpoints(plant.namespace, "scheduler")
    assert len(before) == 1
    old = next(p for p in platform.node.pods.values() if p.name == before[0].pod)
    deleted = time.time()
    platform.core.delete_namespaced_pod(before[0].pod, plant.namespace)
    until(lambda: old.proc is not None and old.proc.poll() is not None, 30, "old process gone")
    after = until(
        lambda: [
            e
            for e in platform.ready_endpoints(plant.namespace, "scheduler")
            if e.pod != before[0].pod
        ],
        60,
        "a replacement endpoint",
    )
    replaced = time.time()
    assert after[0].address != before[0].address  # a new pod, a new IP
    time.sleep(2.0)
    failed = [o for o in plant.traffic.outcomes() if o.code != "OK"]
    # One replica: between the old pod turning not-ready and the new one ready, Traefik has no
    # endpoint and answers UNAVAILABLE itself (no scheduler's track header). Nothing else fails:
    # the preStop sleep kept the old process serving until the gateway stopped sending to it.
    assert all(o.code == "UNAVAILABLE" and o.track == "" for o in failed), failed
    assert all(deleted <= o.sent <= replaced + 1.0 for o in failed), (deleted, replaced, failed)
    answered = [o for o in plant.traffic.outcomes(replaced + 1.0) if o.ok]
    assert answered and {o.track for o in answered} == {"stable"}
