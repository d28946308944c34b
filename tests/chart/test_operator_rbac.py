"""The real operator, with the chart's RBAC and nothing else, drives a rollout to Succeeded.

The chart's ServiceAccount, Roles and RoleBindings (helm template, namespace-scoped, leader
election on) are applied to the real kube-apiserver; the operator runs with a kubeconfig that
holds a token the API server issued for that ServiceAccount (TokenRequest), so every call it
makes, kopf's watches and its Lease included, is authorized as the ServiceAccount, exactly as in
a pod. A rollout through shadow, 25 % and 100 % then has to succeed, with the route read back
version by version; a permission the chart forgot would stop it with a 403.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from testbed.operator_process import OperatorProcess
from tests.chart.conftest import Chart
from tests.cluster.conftest import Cluster
from tests.operator.conftest import (
    CANDIDATE_IMAGE,
    Bed,
    changes,
    rollout_manifest,
    route_weights,
)

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

RELEASE = "sr"
ACCOUNT = f"{RELEASE}-scheduler-rollouts-operator"  # also the Lease's name
NAME = "scheduler-1-5-0"
STEPS = [
    {"shadow": {"duration": "2s"}},
    {"weight": 25, "duration": "2s"},
    {"weight": 100, "duration": "2s"},
]


class ElectingOperator(OperatorProcess):
    """``rollout-operator`` as the chart's Deployment runs it: leader election on its Lease."""

    def __init__(
        self, kubeconfig: Path, namespaces: tuple[str, ...], log: Path, *, lease_namespace: str
    ) -> None:
        super().__init__(kubeconfig, namespaces, log)
        self.lease_namespace = lease_namespace

    def argv(self) -> list[str]:
        lease = [
            "--leader-elect",
            "--lease-name",
            ACCOUNT,
            "--lease-namespace",
            self.lease_namespace,
        ]
        return [*super().argv(), *lease]


def token_kubeconfig(cluster: Cluster, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token of the ServiceAccount."""
    token = cluster.plane.kubectl("create", "token", ACCOUNT, "-n", namespace, "--duration=1h")
    admin = yaml.safe_load(cluster.plane.admin_kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": ACCOUNT, "user": {"token": token.strip()}}],
        "contexts": [
            {"name": ACCOUNT, "context": {"cluster": admin["clusters"][0]["name"], "user": ACCOUNT}}
        ],
        "current-context": ACCOUNT,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture()
def operator_namespace(bed: Bed) -> str:
    name = f"ops-{uuid.uuid4().hex[:6]}"
    bed.cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture()
def chart_operator(
    chart: Chart, bed: Bed, operator_namespace: str, tmp_path: Path
) -> Iterator[ElectingOperator]:
    """The operator under the chart's RBAC for the bed's namespace, started."""
    rbac = tmp_path / "rbac.yaml"
    rbac.write_text(
        chart.template(
            sets=(f"operator.watch.namespaces={{{bed.namespace}}}", "operator.replicas=2"),
            namespace=operator_namespace, release=RELEASE,
            show_only=("templates/operator/serviceaccount.yaml", "templates/operator/rbac.yaml"),
        )
    )  # fmt: skip
    bed.cluster.plane.kubectl("apply", "-f", str(rbac))
    kubeconfig = token_kubeconfig(bed.cluster, operator_namespace, tmp_path / "operator.kubeconfig")
    whoami = bed.cluster.plane.kubectl("auth", "whoami", "-o", "yaml", kubeconfig=kubeconfig)
    username = yaml.safe_load(whoami)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{operator_namespace}:{ACCOUNT}"
    process = ElectingOperator(
        kubeconfig, (bed.namespace,), tmp_path / "operator.log", lease_namespace=operator_namespace
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


def test_a_rollout_succeeds_under_the_charts_rbac(
    bed: Bed, chart_operator: ElectingOperator, operator_namespace: str
) -> None:
    routes, rollouts = bed.record_routes(), bed.record_rollouts()
    bed.apply(rollout_manifest(NAME, bed.prometheus_url, steps=STEPS))
    final = bed.wait_phase(NAME, "Succeeded", 60, chart_operator)

    weights = changes([route_weights(s.obj) for s in routes.of("scheduler")])
    assert weights == [(1, None), (100, 0), (75, 25), (0, 100), (100, 0)]

    # The version without a status may be gone before the watch starts (the operator is fast),
    # and the watch may deliver the last version a moment after the poll above saw it.
    def phases() -> list[str]:
        seen = [(s.obj.get("status") or {}).get("phase") for s in rollouts.of(NAME)]
        return changes([phase for phase in seen if phase is not None])

    deadline = time.monotonic() + 10
    while phases()[-1:] != ["Succeeded"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert phases() == ["Pending", "Shadow", "Canary", "Promoting", "Succeeded"]
    assert final["weight"] == 0
    stable = bed.deployment("scheduler")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == CANDIDATE_IMAGE
    assert bed.deployment("scheduler-candidate") is None  # created and deleted by the account
    assert bed.mirror() is not None  # the mirror ConfigMap, created by the account
    assert {"Shadow", "Canary", "Succeeded"} <= {e["reason"] for e in bed.events(NAME)}

    lease = client.CoordinationV1Api(bed.cluster.api).read_namespaced_lease(
        ACCOUNT, operator_namespace
    )
    log = chart_operator.log.read_text(errors="replace")
    assert f"as {lease.spec.holder_identity}" in log  # it led, through the chart's Lease RBAC
    # Not one call refused: the namespace-scoped operator asks for nothing cluster-wide either.
    # (\b: a port such as :40391 in the log is not a refusal)
    refused = [
        line for line in log.splitlines() if re.search(r"\b403\b|[Ff]orbidden|permission", line)
    ]
    assert refused == [], "\n".join(refused)
