"""The chart as helm renders it: lint, the values schema, and what the manifests promise.

Checked against the code they drive rather than against copies: the operator's and the
scheduler's arguments parse with the real command-line parsers, names and labels are the
operator's own constants, the CRDs are byte for byte the top-level ones, the PrometheusRule
carries exactly the rules file, and every alert's runbook anchor exists.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rollout_operator.cli import build_parser
from rollout_operator.mirror_config import MIRROR_KEY
from rollout_operator.workloads import CANDIDATE_LABEL, MAIN_CONTAINER, TRACK_ENV, TRACK_LABEL
from testbed.pki import CertificateAuthority
from tests.chart.conftest import ALL_ON, CHART, ROOT, RULES, Chart, HelmError, kinds, one

pytestmark = pytest.mark.unit

Obj = dict[str, Any]
BAD = Path(__file__).parent / "bad-values"
CLUSTER_ISTIO = (
    "operator.watch.clusterWide=true",
    "scheduler.enabled=true",
    "scheduler.auth.existingSecret=keys",
    "scheduler.route.provider=istio",
    "scheduler.route.gateways={gateways/plant}",
    "monitoring.serviceMonitor.enabled=true",
)
# name -> (values files, --set): the default, every switch on, the other routing and RBAC modes
VARIANTS: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    "all-on": ((ALL_ON,), ()),
    "cluster-wide-istio": ((), CLUSTER_ISTIO),
    "replicas-router": (
        (),
        (
            "scheduler.enabled=true",
            "scheduler.auth.enabled=false",
            "scheduler.route.provider=replicas",
        ),
    ),
}


def pods(objects: list[Obj]) -> list[tuple[str, Obj]]:
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in kinds(objects, "Deployment")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_passes(chart: Chart, variant: str) -> None:
    values, sets = VARIANTS[variant]
    out = chart.lint(*values, sets=sets)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_runs_restricted_with_limits_and_probes(chart: Chart, variant: str) -> None:
    values, sets = VARIANTS[variant]
    objects = chart.render(*values, sets=sets)
    assert pods(objects), "no Deployment rendered"
    for name, template in pods(objects):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert {"livenessProbe", "readinessProbe"} <= set(container), name
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


def test_crds_are_the_top_level_ones() -> None:
    chart_crds = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    top_crds = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert chart_crds == top_crds
    for name in top_crds:
        same = (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes()
        assert same, f"charts/scheduler-rollouts/crds/{name} differs from crds/{name}: copy it"


def test_the_prometheus_rule_carries_exactly_the_rules_file(chart: Chart) -> None:
    rule = one(chart.render(sets=("monitoring.prometheusRule.enabled=true",)), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_the_signoff_policy_is_the_file_bound_to_the_approvers_in_each_watched_namespace(
    chart: Chart,
) -> None:
    objects = chart.render(sets=("operator.watch.namespaces={plant,plant-b}",))
    policy = one(objects, "ValidatingAdmissionPolicy")
    assert policy["spec"] == yaml.safe_load((CHART / "files" / "signoff-policy.yaml").read_text())
    binding = one(objects, "ValidatingAdmissionPolicyBinding")["spec"]
    assert binding["policyName"] == policy["metadata"]["name"]
    assert binding["paramRef"] == {
        "name": "schedrollout-approvers",
        "parameterNotFoundAction": "Deny",
    }
    (covered,) = binding["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert covered["values"] == ["plant", "plant-b"]  # Deny: only where the ConfigMap is
    approvers = [
        c for c in kinds(objects, "ConfigMap") if c["metadata"]["name"] == "schedrollout-approvers"
    ]
    assert [c["metadata"]["namespace"] for c in approvers] == ["plant", "plant-b"]
    assert approvers[0]["data"] == {
        "ops-manager": "plant-ops-managers",
        "plant-manager": "plant-managers",
    }
    wide = one(
        chart.render(sets=("operator.watch.clusterWide=true",)), "ValidatingAdmissionPolicyBinding"
    )
    assert "matchResources" not in wide["spec"]  # every namespace: no rollout escapes the check
    off = chart.render(sets=("signOffs.enabled=false",))
    assert not kinds(off, "ValidatingAdmissionPolicy")
    assert "schedrollout-approvers" not in {c["metadata"]["name"] for c in kinds(off, "ConfigMap")}


def test_every_alert_links_an_existing_runbook_section() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    alerts = [r for r in rules if "alert" in r]
    assert len(alerts) == 8
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "runbook.md").read_text(), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    for alert in alerts:
        link = alert["annotations"]["runbook"]
        assert link == f"docs/runbook.md#{alert['alert'].lower()}"
        assert link.split("#")[1] in anchors, f"docs/runbook.md has no section {alert['alert']}"
        assert alert["labels"]["severity"] in {"critical", "warning"}


def operator_args(objects: list[Obj]) -> argparse.Namespace:
    (deployment,) = [
        d for d in kinds(objects, "Deployment") if d["metadata"]["name"].endswith("-operator")
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [a.replace("$(POD_NAMESPACE)", "ops") for a in container["args"]]
    return build_parser().parse_args(args)  # what the image's entry point will parse


@pytest.mark.parametrize(
    ("sets", "elect"),
    [
        ((), False),
        (("operator.replicas=2",), True),
        (("operator.leaderElection.enabled=true",), True),
    ],
)
def test_leader_election_when_more_than_one_replica(
    chart: Chart, sets: tuple[str, ...], elect: bool
) -> None:
    objects = chart.render(sets=sets)
    args = operator_args(objects)
    assert args.leader_elect is elect
    lease_roles = [
        r for r in kinds(objects, "Role") if r["metadata"]["name"].endswith("-leader-election")
    ]
    assert len(lease_roles) == int(elect)
    if elect:
        assert args.lease_namespace == "ops"
        (named, create) = lease_roles[0]["rules"]
        assert named["resourceNames"] == [args.lease_name]
        assert (named["verbs"], create["verbs"]) == (["get", "patch"], ["create"])


def test_operator_scope_follows_the_watch_values(chart: Chart) -> None:
    assert operator_args(chart.render()).namespace == ["ops"]  # the release's namespace
    listed = chart.render(sets=("operator.watch.namespaces={plant,plant-b}",))
    assert operator_args(listed).namespace == ["plant", "plant-b"]
    assert {r["metadata"]["namespace"] for r in kinds(listed, "Role")} == {"plant", "plant-b"}
    assert not kinds(listed, "ClusterRole")
    wide = chart.render(sets=("operator.watch.clusterWide=true",))
    assert operator_args(wide).all_namespaces is True
    assert not kinds(wide, "Role")
    binding = one(wide, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sr-scheduler-rollouts-operator", "namespace": "ops"}
    ]


@pytest.mark.parametrize("variant", ["default", "cluster-wide-istio"])
def test_rbac_never_reaches_secrets_or_wildcards(chart: Chart, variant: str) -> None:
    values, sets = VARIANTS[variant]
    objects = chart.render(*values, sets=sets)
    roles = kinds(objects, "Role") + kinds(objects, "ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert "secrets" not in rule["resources"]
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])


def test_scheduler_manifests_fit_the_operator_and_the_server(chart: Chart) -> None:
    from jobshop_scheduler.service.serve_cli import add_arguments  # noqa: PLC0415

    objects = chart.render(ALL_ON)
    stable = one(objects, "Deployment", "scheduler")
    template = stable["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["name"] == MAIN_CONTAINER  # the container the operator rewrites
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[TRACK_ENV] == "stable"
    assert template["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert stable["spec"]["selector"]["matchLabels"][TRACK_LABEL] == "stable"
    assert "replicas" not in stable["spec"]  # the autoscaler owns the count

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert container["args"][0] == "serve"
    args = parser.parse_args(container["args"][1:])  # what `schedctl serve` will parse
    assert str(args.keys) == "/etc/scheduler/keys" and not args.no_auth
    assert str(args.tls_cert) == "/etc/scheduler/tls/tls.crt"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes[mounts["/etc/scheduler/keys"]]["secret"]["secretName"] == "scheduler-api-keys"
    assert volumes[mounts["/etc/scheduler/tls"]]["secret"]["secretName"] == "scheduler-tls"
    assert str(args.model_dir).startswith("/opt/scheduler/models/")
    assert volumes[mounts["/opt/scheduler/models"]]["persistentVolumeClaim"]
    # The mirror config: the ConfigMap the operator writes (<target>-mirror), optional.
    assert args.mirror_config == Path("/etc/scheduler/mirror") / MIRROR_KEY
    mirror = volumes[mounts["/etc/scheduler/mirror"]]["configMap"]
    assert mirror == {"name": "scheduler-mirror", "optional": True}

    stable_svc = one(objects, "Service", "scheduler")
    canary_svc = one(objects, "Service", "scheduler-canary")
    assert stable_svc["spec"]["selector"] == stable["spec"]["selector"]["matchLabels"]
    assert canary_svc["spec"]["selector"] == {CANDIDATE_LABEL: "scheduler"}
    route = one(objects, "GRPCRoute", "scheduler")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "scheduler", "port": 50051}]
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "scheduler"
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == stable["spec"]["selector"]["matchLabels"]
    # Candidate pods keep the stable template's labels but track: the policy must not select on it.
    policy = one(objects, "NetworkPolicy")
    assert TRACK_LABEL not in policy["spec"]["podSelector"]["matchLabels"]
    assert set(policy["spec"]["podSelector"]["matchLabels"].items()) < set(
        template["metadata"]["labels"].items()
    )


def test_the_service_monitor_scrapes_both_services_under_the_alerts_job(chart: Chart) -> None:
    objects = chart.render(ALL_ON)
    monitor = one(objects, "ServiceMonitor", "scheduler")
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in ("scheduler", "scheduler-canary"):
        labels = one(objects, "Service", service)["metadata"]["labels"]
        assert set(selector.items()) <= set(labels.items()), service
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": "jobshop-scheduler"} in (
        endpoint["relabelings"]
    )
    assert 'job="jobshop-scheduler"' in RULES.read_text()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_replica_router_needs_a_stable_service_over_both_tracks(chart: Chart) -> None:
    values, sets = VARIANTS["replicas-router"]
    objects = chart.render(*values, sets=sets)
    assert TRACK_LABEL not in one(objects, "Service", "scheduler")["spec"]["selector"]
    assert not kinds(objects, "GRPCRoute") and not kinds(objects, "VirtualService")
    args = one(objects, "Deployment", "scheduler")["spec"]["template"]["spec"]["containers"][0]
    assert "--no-auth" in args["args"]


def test_istio_variant_renders_a_virtual_service(chart: Chart) -> None:
    values, sets = VARIANTS["cluster-wide-istio"]
    vs = one(chart.render(*values, sets=sets), "VirtualService", "scheduler")
    assert vs["spec"]["hosts"] == ["scheduler"]
    assert vs["spec"]["gateways"] == ["gateways/plant"]
    assert vs["spec"]["http"][0]["route"][0]["destination"] == {
        "host": "scheduler", "port": {"number": 50051},
    }  # fmt: skip


def test_namespaced_rbac_is_one_role_per_watched_namespace(chart: Chart) -> None:
    """Exactly one Role and RoleBinding per watched namespace (plus the Lease's in the release's
    namespace), bound to the operator's account; the can-i matrix (test_chart_cluster) relies on
    it."""
    objects = chart.render(
        sets=("operator.watch.namespaces={a,b}", "operator.replicas=2"),
        show_only=("templates/operator/rbac.yaml",),
    )
    placed = sorted((o["kind"], o["metadata"]["namespace"]) for o in objects)
    assert placed == [
        ("Role", "a"), ("Role", "b"), ("Role", "ops"),
        ("RoleBinding", "a"), ("RoleBinding", "b"), ("RoleBinding", "ops"),
    ]  # fmt: skip
    account = {
        "kind": "ServiceAccount",
        "name": "sr-scheduler-rollouts-operator",
        "namespace": "ops",
    }
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [account]


BAD_CASES = {
    # file in tests/chart/bad-values -> what helm's message must name
    "operator-replicas-zero.yaml": "/operator/replicas",
    "operator-replicas-string.yaml": "/operator/replicas",
    "operator-unknown-key.yaml": "replica",
    "watch-namespace-invalid.yaml": "/operator/watch/namespaces/0",
    "route-provider-unknown.yaml": "/scheduler/route/provider",
    "auth-without-secret.yaml": "/scheduler/auth/existingSecret",
    "tls-without-secret.yaml": "/scheduler/tls/existingSecret",
    "gateway-without-parent.yaml": "/scheduler/route/parentRefs",
    "autoscaling-with-replica-router.yaml": "/scheduler/autoscaling/enabled",
    "no-memory-limit.yaml": "memory",
    "service-monitor-interval.yaml": "/monitoring/serviceMonitor/interval",
    "legacy-rule-unknown.yaml": "/scheduler/legacyRule",
    "signoff-role-invalid.yaml": "/signOffs/roles",
}


def test_every_bad_values_file_is_a_case() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(BAD_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_the_schema_rejects_bad_values(chart: Chart, name: str) -> None:
    checks = (
        (chart.lint, "[ERROR]"),
        (chart.template, "values don't meet the specifications of the schema"),
    )
    for command, says in checks:
        with pytest.raises(HelmError) as failed:
            command(BAD / name)
        message = str(failed.value)
        assert says in message, message
        assert BAD_CASES[name] in message, message


@pytest.mark.grpc
def test_the_tls_readiness_probe_checks_the_schedulers_health(chart: Chart, tmp_path: Path) -> None:
    """The probe the chart renders for a TLS scheduler, run as the kubelet would, against a real
    TLS gRPC health service on loopback: exit 0 while SERVING, non-zero otherwise."""
    stable = one(chart.render(ALL_ON), "Deployment", "scheduler")
    command = stable["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"][
        "command"
    ]
    assert command[:2] == ["python", "-c"]
    ca = CertificateAuthority(tmp_path / "pki")
    pair = ca.issue("scheduler", "scheduler", dns_sans=("localhost",), server=True)
    credentials = grpc.ssl_server_credentials([(pair.key.read_bytes(), pair.cert.read_bytes())])
    server = grpc.server(ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("localhost:0", credentials)
    server.start()
    script = command[2].replace("/etc/scheduler/tls/ca.crt", str(ca.cert_path))
    script = script.replace("localhost:50051", f"localhost:{port}")
    status = health_pb2.HealthCheckResponse

    def probe() -> int:
        run = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, timeout=30, check=False
        )
        return run.returncode

    try:
        servicer.set("scheduler.v1.Scheduler", status.NOT_SERVING)  # the model not checked yet
        assert probe() != 0
        servicer.set("scheduler.v1.Scheduler", status.SERVING)
        assert probe() == 0
    finally:
        server.stop(None)
    assert probe() != 0  # nobody listening
