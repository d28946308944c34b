"""The SchedulerRollout CRD on the real kube-apiserver: defaults, validation, columns, status."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.spec import parse_spec
from rollout_operator.status import RolloutStatus
from testbed.kube import KubeControlPlane, KubectlError
from tests.unit.operator.rollout_cases import Driver

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD = "schedulerrollouts.rollouts.scheduling.io"
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())
MINIMAL_SPEC: dict[str, Any] = {
    "targetRef": {"name": "scheduler"},
    "candidate": {"modelVersion": "2026.11.1"},
    "routing": {
        "provider": "gatewayAPI",
        "route": "scheduler",
        "stableService": "scheduler",
        "canaryService": "scheduler-canary",
    },
}


@pytest.fixture(scope="module")
def crd(kube: KubeControlPlane) -> KubeControlPlane:
    out = kube.kubectl("apply", "-f", str(ROOT / "crds"))
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD}" in out
    kube.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    return kube


@pytest.fixture()
def ns(crd: KubeControlPlane) -> Iterator[str]:
    name = f"sro-{uuid.uuid4().hex[:8]}"
    crd.kubectl("create", "namespace", name)
    yield name
    crd.kubectl("delete", "schedulerrollouts", "--all", "-n", name, "--wait=false")
    crd.kubectl("delete", "namespace", name, "--wait=false")  # no namespace controller here


def manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rollouts.scheduling.io/v1alpha1",
        "kind": "SchedulerRollout",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(kube: KubeControlPlane, ns: str, body: dict[str, Any]) -> str:
    return kube.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(body))


def get(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(kube.kubectl("get", "sro", name, "-n", ns, "-o", "json"))
    return got


def test_the_example_is_accepted_and_reads_back_unchanged(crd: KubeControlPlane, ns: str) -> None:
    out = crd.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "rollout.yaml"))
    assert "schedulerrollout.rollouts.scheduling.io/scheduler-1-5-0 created" in out
    stored = get(crd, ns, "scheduler-1-5-0")["spec"]
    assert parse_spec(stored) == parse_spec(EXAMPLE["spec"])
    assert stored["steps"][0]["verify"]["replay"] == {"configMap": "scheduler-replay"}
    assert stored["steps"][1] == {"shadow": {"duration": "5d", "percent": 100}}
    assert stored["steps"][5] == {"approval": {"roles": ["ops-manager", "plant-manager"]}}
    assert stored["analysis"]["shadowCompare"]["enabled"] is True
    assert stored["analysis"]["shadowCompare"]["test"] == "sequential"


def test_a_minimal_rollout_gets_the_standard_plan(crd: KubeControlPlane, ns: str) -> None:
    apply(crd, ns, manifest("minimal", MINIMAL_SPEC))
    stored = get(crd, ns, "minimal")["spec"]
    assert stored["steps"] == [
        {"shadow": {"duration": "5d", "percent": 100}},
        {"weight": 10, "duration": "2d"},
        {"weight": 25, "duration": "2d"},
        {"weight": 50, "duration": "2d"},
        {"approval": {}},
        {"weight": 100, "duration": "24h"},
    ]
    analysis = stored["analysis"]
    assert analysis["interval"] == "60s"
    assert analysis["prometheus"] == {"url": "http://prometheus.monitoring.svc:9090"}
    assert analysis["rollback"][0] == {"name": "completion-rate", "below": 0.9, "for": 2}
    assert [r["name"] for r in analysis["warn"]] == [
        "completion-rate",
        "latency-p95-seconds",
        "memory-utilisation",
    ]
    assert analysis["shadowCompare"] == {
        "enabled": True,
        "maxMakespanRegression": 0,
        "minSamples": 20,
        "test": "mean",
        "alpha": 0.05,
        "beta": 0.05,
        "effect": 0.2,
        "promoteEarly": False,
    }
    assert (analysis["noData"], analysis["noDataLimit"]) == ("hold", 10)
    assert stored["routing"]["port"] == 50051
    # The server's defaults and the parser's are the same plan.
    assert parse_spec(stored) == parse_spec(MINIMAL_SPEC)


def broken(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(EXAMPLE["spec"])
    node: Any = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            broken("steps.2.weight", 150),
            r"spec\.steps\[2\]\.weight: Invalid value: 150: .*less than or equal to 100",
            id="weight-150",
        ),
        pytest.param(
            broken("steps", []), r"spec\.steps: Invalid value: .*at least 1 items", id="no-steps"
        ),
        pytest.param(
            broken("routing.provider", "linkerd"),
            r'spec\.routing\.provider: Unsupported value: "linkerd": supported values: '
            r'"gatewayAPI", "istio", "replicas"',
            id="unknown-provider",
        ),
        pytest.param(
            broken("steps.5", {"approval": {}, "weight": 50, "duration": "1h"}),
            r"spec\.steps\[5\]: Invalid value: .*each step sets exactly one of verify, shadow, "
            r"weight or approval",
            id="weight-and-approval",
        ),
        pytest.param(
            broken("steps.2", {"weight": 10}),
            r"spec\.steps\[2\]: .*a weight step needs a duration",
            id="weight-without-duration",
        ),
        pytest.param(
            broken("analysis.rollback.0", {"name": "error-rate", "below": 0.1, "above": 0.5}),
            r"spec\.analysis\.rollback\[0\]: .*a rule sets exactly one of below or above",
            id="below-and-above",
        ),
        pytest.param(
            broken("steps.2.duration", "2 days"),
            r"spec\.steps\[2\]\.duration: Invalid value: \"2 days\": .*should match",
            id="bad-duration",
        ),
        pytest.param(
            broken("steps.0.verify.replay", {"configMap": "r", "volume": {"emptyDir": {}}}),
            r"spec\.steps\[0\]\.verify\.replay: .*exactly one of configMap or volume",
            id="replay-from-two-sources",
        ),
        pytest.param(
            broken("steps.5.approval.roles", ["Ops Manager"]),
            r"spec\.steps\[5\]\.approval\.roles\[0\]: Invalid value: \"Ops Manager\"",
            id="role-not-a-label",
        ),
        pytest.param(
            broken("analysis.shadowCompare.test", "bayes"),
            r'spec\.analysis\.shadowCompare\.test: Unsupported value: "bayes"',
            id="unknown-shadow-test",
        ),
        pytest.param(
            broken("analysis.noData", "ignore"),
            r'spec\.analysis\.noData: Unsupported value: "ignore"',
            id="unknown-no-data-policy",
        ),
        pytest.param(
            broken(
                "analysis.rollback",
                [{"name": "error-rate", "above": 0.1}, {"name": "error-rate", "above": 0.2}],
            ),
            r"spec\.analysis\.rollback\[1\]: Duplicate value",
            id="duplicate-rule",
        ),
        pytest.param(
            broken("routing", {"provider": "istio", "stableService": "a", "canaryService": "b"}),
            r"route .* is required for providers gatewayAPI and istio",
            id="istio-without-route",
        ),
    ],
)
def test_nonsense_is_refused_at_apply(
    crd: KubeControlPlane, ns: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError, match=message):
        apply(crd, ns, manifest("bad", spec))
    with pytest.raises(KubectlError, match="NotFound"):
        get(crd, ns, "bad")


def status_patch(kube: KubeControlPlane, ns: str, name: str, status: dict[str, Any]) -> None:
    kube.kubectl(
        "patch", "sro", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_printer_columns(crd: KubeControlPlane, ns: str) -> None:
    crd.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "rollout.yaml"))
    status = {"phase": "AwaitingApproval", "step": 2, "weight": 25, "gate": "sign-offs 1/2"}
    status_patch(crd, ns, "scheduler-1-5-0", status)
    header, row = crd.kubectl("get", "sro", "-n", ns).splitlines()
    assert header.split() == [
        "NAME",
        "PHASE",
        "STEP",
        "WEIGHT",
        "CANDIDATE",
        "MODEL",
        "GATE",
        "AGE",
    ]
    assert "sign-offs 1/2" in row
    assert row.split()[:6] == [
        "scheduler-1-5-0",
        "AwaitingApproval",
        "2",
        "25",
        "registry.example/scheduler:1.5.0",
        "2026.11.1",
    ]
    wide = crd.kubectl("get", "schedulerrollouts", "-n", ns, "-o", "wide").splitlines()[0]
    assert wide.split()[-1] == "MESSAGE"


def test_the_status_survives_the_api_server(crd: KubeControlPlane, ns: str) -> None:
    apply(crd, ns, manifest("status", MINIMAL_SPEC))
    driver = Driver()
    driver.tick()
    driver.analysed(completion_rate=0.8, latency_p95_seconds=None, memory_utilisation=0.95)
    written = driver.status.to_dict()
    status_patch(crd, ns, "status", {**written, "kopf": {"progress": {"x": 1}}, "extra": "kept"})
    stored = get(crd, ns, "status")["status"]
    assert stored["extra"] == "kept"  # unknown fields are not pruned
    assert stored["kopf"] == {"progress": {"x": 1}}
    assert "candidateUnavailableSince" not in stored  # null in a merge patch: removed
    assert RolloutStatus.from_dict(stored) == driver.status  # the state machine's round trip

    # Through the main resource the status is not writable (the status subresource is on).
    crd.kubectl(
        "patch", "sro", "status", "-n", ns, "--type=merge", "-p", '{"status": {"phase": "Failed"}}'
    )
    assert get(crd, ns, "status")["status"]["phase"] == "Shadow"
    # A status write with a wrong type is refused, naming the field.
    with pytest.raises(KubectlError, match=r"status\.weight: Invalid value"):
        status_patch(crd, ns, "status", {"weight": "ten"})
