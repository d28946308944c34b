"""The chart against the real kube-apiserver: its manifests, and its RBAC as the operator's
ServiceAccount sees it.

Every rendered object goes through ``kubectl apply --dry-run=server --validate=strict`` (the API
server's own validation, admission and unknown-field check) with the chart's CRD and the test
stand-ins for GRPCRoute, VirtualService, ServiceMonitor and PrometheusRule installed. The RBAC is
applied for real and asked, with ``kubectl auth can-i --as`` the ServiceAccount, for everything
the operator does (allowed) and for what it must never get (Secrets, cluster-wide writes,
verbs it does not use, and namespaces it does not watch when namespace-scoped).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client

from testbed import binaries
from tests.chart.conftest import ALL_ON, CHART, Chart, load_all
from tests.chart.test_chart_render import VARIANTS
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

MONITORING_CRDS = ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")
RELEASE = "sr"
OPERATOR_SA = f"{RELEASE}-scheduler-rollouts-operator"
SRO = "schedulerrollouts.rollouts.scheduling.io"


@pytest.fixture(scope="session")
def chart_crds(cluster: Cluster, route_crds: None) -> Cluster:
    """The chart's CRDs and every stand-in of tests/crds, Established."""
    cluster.plane.kubectl("apply", "-f", str(CHART / "crds"))
    names = [*MONITORING_CRDS, "schedulerrollouts.rollouts.scheduling.io"]
    cluster.plane.kubectl(
        "wait", "--for=condition=Established", *(f"crd/{n}" for n in names), "--timeout=60s"
    )
    return cluster


def new_namespace(cluster: Cluster, stem: str) -> str:
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_server_accepts_every_rendered_object(
    chart: Chart, chart_crds: Cluster, variant: str, tmp_path: Path
) -> None:
    values, sets = VARIANTS[variant]
    release_ns = new_namespace(chart_crds, "chart")
    if values == (ALL_ON,):  # its watched namespaces, here unique to this test
        watched = [new_namespace(chart_crds, "plant"), new_namespace(chart_crds, "plant-b")]
        sets = (*sets, f"operator.watch.namespaces={{{','.join(watched)}}}")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(chart.template(*values, sets=sets, namespace=release_ns, release=RELEASE))
    objects = load_all(manifest.read_text())
    out = chart_crds.plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", str(manifest)
    )
    accepted = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(objects), out
    kinds = {o["kind"] for o in objects}
    if variant == "all-on":
        assert {"GRPCRoute", "ServiceMonitor", "PrometheusRule", "NetworkPolicy",
                "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds  # fmt: skip
    if variant == "cluster-wide-istio":
        assert {"VirtualService", "ClusterRole", "ClusterRoleBinding"} <= kinds


def test_helm_installs_and_uninstalls_the_release(
    chart: Chart, chart_crds: Cluster, tmp_path: Path
) -> None:
    """A real `helm install` (every switch on) and `helm uninstall`: Helm's own path through the
    API server, and the release notes a platform team reads."""
    release_ns = new_namespace(chart_crds, "plant")
    kubeconfig = f"--kubeconfig={chart_crds.plane.admin_kubeconfig}"
    watched = f"operator.watch.namespaces={{{release_ns}}}"
    out = chart.run(
        "install", RELEASE, str(CHART), "-n", release_ns, kubeconfig, "-f", str(ALL_ON),
        "--set", watched,
    )  # fmt: skip
    assert "STATUS: deployed" in out, out
    assert f"Leader election: Lease {release_ns}/{OPERATOR_SA}." in out
    assert "routing.canaryService scheduler-canary" in out
    assert (
        "(ConfigMap schedrollout-approvers: ops-manager -> plant-ops-managers, "
        "plant-manager -> plant-managers)." in out
    )
    names = chart_crds.plane.kubectl(
        "get", "deploy,svc,grpcroute,role", "-n", release_ns, "-o", "name"
    )
    assert (
        "deployment.apps/scheduler" in names
        and f"role.rbac.authorization.k8s.io/{OPERATOR_SA}" in names
    )
    chart.run("uninstall", RELEASE, "-n", release_ns, kubeconfig, "--wait", "--timeout=60s")
    left = chart_crds.plane.kubectl("get", "deploy,svc,role", "-n", release_ns, "-o", "name")
    assert left.strip() == "", left


# --- RBAC -----------------------------------------------------------------------------------


def can_i(cluster: Cluster, user: str, check: str) -> bool:
    """``kubectl auth can-i <check> --as user``: yes (exit 0) or no (exit 1)."""
    argv = [
        str(binaries.find("kubectl")), f"--kubeconfig={cluster.plane.admin_kubeconfig}",
        "auth", "can-i", *check.split(), f"--as={user}",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode in (0, 1), f"kubectl auth can-i {check}: {result.stderr}"
    return result.returncode == 0


def ask(cluster: Cluster, user: str, checks: list[str]) -> dict[str, bool]:
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(checks, pool.map(lambda c: can_i(cluster, user, c), checks), strict=True))


def operator_does(namespace: str) -> list[str]:
    """Every call the operator makes in a namespace it reconciles rollouts in."""
    n = f"-n {namespace}"
    return [
        *(f"{verb} {SRO} {n}" for verb in ("get", "list", "watch", "patch")),
        f"patch {SRO} --subresource=status {n}",
        *(f"{v} deployments.apps {n}" for v in ("get", "create", "update", "patch", "delete")),
        f"get services {n}", f"create services {n}",
        f"get configmaps {n}", f"create configmaps {n}", f"patch configmaps {n}",
        f"create events {n}",
        f"get grpcroutes.gateway.networking.k8s.io {n}",
        f"update grpcroutes.gateway.networking.k8s.io {n}",
        f"get virtualservices.networking.istio.io {n}",
        f"update virtualservices.networking.istio.io {n}",
    ]  # fmt: skip


def sample_of(namespace: str) -> list[str]:
    """One call per resource the operator touches (for namespaces where all must be refused)."""
    n = f"-n {namespace}"
    return [
        f"get {SRO} {n}", f"watch {SRO} {n}", f"patch {SRO} --subresource=status {n}",
        f"create deployments.apps {n}", f"get services {n}", f"patch configmaps {n}",
        f"create events {n}", f"update grpcroutes.gateway.networking.k8s.io {n}",
        f"update virtualservices.networking.istio.io {n}",
    ]  # fmt: skip


def never_in(namespace: str) -> list[str]:
    """What the operator never needs in a namespace it reconciles in."""
    n = f"-n {namespace}"
    return [
        *(f"{verb} secrets {n}" for verb in ("get", "list", "watch", "create", "update")),
        f"delete {SRO} {n}", f"update {SRO} {n}", f"create {SRO} {n}",
        f"delete services {n}", f"update services {n}", f"delete configmaps {n}",
        f"deletecollection deployments.apps {n}",
        f"update deployments.apps --subresource=scale {n}",
        f"patch deployments.apps --subresource=status {n}",
        f"create pods {n}", f"create pods --subresource=exec {n}", f"delete pods {n}",
        f"create serviceaccounts --subresource=token {n}",
        f"create roles.rbac.authorization.k8s.io {n}",
        f"create rolebindings.rbac.authorization.k8s.io {n}",
        f"delete grpcroutes.gateway.networking.k8s.io {n}",
        f"create virtualservices.networking.istio.io {n}",
        f"patch events {n}", f"delete events {n}",
    ]  # fmt: skip


CLUSTER_WRITES = [
    "create namespaces", "delete namespaces", "patch nodes",
    "create clusterroles.rbac.authorization.k8s.io",
    "create clusterrolebindings.rbac.authorization.k8s.io",
    "create customresourcedefinitions.apiextensions.k8s.io",
    "update customresourcedefinitions.apiextensions.k8s.io",
    "delete customresourcedefinitions.apiextensions.k8s.io",
    "create validatingwebhookconfigurations.admissionregistration.k8s.io",
    "impersonate users", "impersonate serviceaccounts",
    "get secrets --all-namespaces", "list secrets --all-namespaces",
]  # fmt: skip


def apply_rbac(
    chart: Chart, cluster: Cluster, tmp_path: Path, sets: tuple[str, ...], ns: str
) -> None:
    manifest = tmp_path / f"rbac-{ns}.yaml"
    manifest.write_text(
        chart.template(
            sets=sets, namespace=ns, release=RELEASE,
            show_only=("templates/operator/serviceaccount.yaml", "templates/operator/rbac.yaml"),
        )
    )  # fmt: skip
    cluster.plane.kubectl("apply", "-f", str(manifest))
    time.sleep(0.5)  # the RBAC authorizer's informers see the new bindings


def report(answers: dict[str, bool], expected: bool) -> list[str]:
    return [check for check, allowed in answers.items() if allowed is not expected]


def test_namespace_scoped_rbac_allows_the_operator_and_nothing_else(
    chart: Chart, chart_crds: Cluster, tmp_path: Path
) -> None:
    ops, a, b, other = (new_namespace(chart_crds, s) for s in ("ops", "plant", "plant-b", "other"))
    sets = (f"operator.watch.namespaces={{{a},{b}}}", "operator.replicas=2")
    apply_rbac(chart, chart_crds, tmp_path, sets, ops)
    user = f"system:serviceaccount:{ops}:{OPERATOR_SA}"
    lease = f"leases.coordination.k8s.io/{OPERATOR_SA} -n {ops}"
    allowed = [
        *operator_does(a), *sample_of(b),
        f"get {lease}", f"patch {lease}", f"create leases.coordination.k8s.io -n {ops}",
    ]  # fmt: skip
    denied = [
        *never_in(a), f"get secrets -n {ops}", f"list secrets -n {ops}",
        *sample_of(other),  # a namespace it does not watch
        *sample_of(ops),  # its own namespace, which it does not watch here
        f"list {SRO} --all-namespaces", f"watch {SRO} --all-namespaces",
        "get deployments.apps --all-namespaces",
        f"get leases.coordination.k8s.io/someone-else -n {ops}",
        f"delete {lease}", f"update {lease}",
        f"get leases.coordination.k8s.io/{OPERATOR_SA} -n {a}",  # a Lease of its name elsewhere
        "list customresourcedefinitions.apiextensions.k8s.io", "list namespaces",
        *CLUSTER_WRITES,
    ]  # fmt: skip
    answers = ask(chart_crds, user, allowed + denied)
    assert report({c: answers[c] for c in allowed}, True) == [], "denied but needed"
    assert report({c: answers[c] for c in denied}, False) == [], "allowed but not needed"


def test_cluster_wide_rbac_allows_the_operator_everywhere_and_no_more(
    chart: Chart, chart_crds: Cluster, tmp_path: Path
) -> None:
    ops, anywhere = new_namespace(chart_crds, "ops"), new_namespace(chart_crds, "anywhere")
    apply_rbac(chart, chart_crds, tmp_path, ("operator.watch.clusterWide=true",), ops)
    user = f"system:serviceaccount:{ops}:{OPERATOR_SA}"
    allowed = [
        *operator_does(anywhere), *sample_of("default"),
        f"list {SRO} --all-namespaces", f"watch {SRO} --all-namespaces",
        "get customresourcedefinitions.apiextensions.k8s.io",
        "watch customresourcedefinitions.apiextensions.k8s.io",
    ]  # fmt: skip
    denied = [
        *never_in(anywhere),
        *never_in("kube-system"),
        f"create leases.coordination.k8s.io -n {ops}",  # one replica: no leader election
        *CLUSTER_WRITES,
    ]
    answers = ask(chart_crds, user, allowed + denied)
    assert report({c: answers[c] for c in allowed}, True) == [], "denied but needed"
    assert report({c: answers[c] for c in denied}, False) == [], "allowed but not needed"
