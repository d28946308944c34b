"""Sign-offs by role on the real kube-apiserver: the chart's ValidatingAdmissionPolicy, binding and
approvers ConfigMap as helm renders them, and ``kubectl schedrollout approve --role``.

Users are client certificates (CN = user, O = groups) of the test control plane's CA, each
allowed by a Role to create and patch rollouts in the test's namespace, so every refusal below
is the policy's, not RBAC's: alice is in plant-ops-managers, bob in plant-managers, mallory in
neither.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollout_operator import commands, kubectl_plugin, signoffs
from rollout_operator.resource import GROUP, PLURAL, VERSION
from testbed.kube import KubeControlPlane
from tests.chart.conftest import ROOT, Chart
from tests.cluster.conftest import Cluster, cluster_of
from tests.cluster.test_crd import MINIMAL_SPEC
from tests.conftest import start_server

pytestmark = pytest.mark.cluster

POLICY_TEMPLATE = "templates/signoffs/policy.yaml"
CONFIG_MAP = "schedrollout-approvers"  # the chart's default, as the roles below
USERS = {
    "alice": ("plant-ops-managers",),
    "bob": ("plant-managers",),
    "mallory": ("plant-visitors",),
}
EFFECT_TIMEOUT = 30.0  # the API server loads a new policy and binding within seconds


@dataclass(frozen=True)
class Bed:
    cluster: Cluster
    namespace: str
    kubeconfigs: dict[str, Path]
    apis: dict[str, client.CustomObjectsApi]

    def create(self, name: str, annotations: dict[str, str] | None = None, *, by: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SchedulerRollout",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": MINIMAL_SPEC,
        }
        self.apis[by].create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def rollout(self) -> str:
        """A fresh rollout, created by the admin, without sign-offs."""
        name = f"r-{uuid.uuid4().hex[:8]}"
        self.create(name, by="admin")
        return name

    def annotate(
        self, name: str, annotations: dict[str, str | None], *, by: str, dry_run: bool = False
    ) -> None:
        """A merge patch of annotations by ``by`` (None removes one)."""
        patch = {"metadata": {"annotations": annotations}}
        extra = {"dry_run": "All"} if dry_run else {}
        self.apis[by].patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch, **extra
        )

    def annotations(self, name: str) -> dict[str, str]:
        obj: Any = self.apis["admin"].get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return dict(obj["metadata"].get("annotations") or {})


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    """The status and message of the API server's refusal of ``call``."""
    with pytest.raises(ApiException) as info:
        call()
    return info.value.status, json.loads(info.value.body)["message"]


def signed(role: str, user: str) -> dict[str, str | None]:
    return {signoffs.key(role): signoffs.encode(user)}


def editor_rbac(namespace: str) -> str:
    """A Role to create and patch rollouts, bound to every test user."""
    rules = [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "verbs": ["get", "list", "watch", "create", "patch", "update"],
        }
    ]
    meta = {"name": "rollout-editor", "namespace": namespace}
    subjects = [
        {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"} for user in USERS
    ]
    role_ref = {"kind": "Role", "name": "rollout-editor", "apiGroup": "rbac.authorization.k8s.io"}
    return yaml.safe_dump_all(
        [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": meta, "subjects": subjects, "roleRef": role_ref},
        ]
    )  # fmt: skip


def wait_in_effect(bed: Bed) -> None:
    """Dry-run a forbidden sign-off until the API server refuses it: the policy, its binding and
    the ConfigMap reach the admission plugin through informers, a moment after they are made.
    Until the ConfigMap's informer has it, the binding refuses every write with 422 "no params
    found" (its parameterNotFoundAction is Deny): that too means not yet in effect."""
    deadline = time.monotonic() + EFFECT_TIMEOUT
    name: str | None = None
    while True:
        try:
            name = name or bed.rollout()
            bed.annotate(name, signed("ops-manager", "mallory"), by="mallory", dry_run=True)
        except ApiException as exc:
            if exc.status == 403:
                return
            assert exc.status == 422 and "no params found" in (exc.body or ""), exc.body
        assert time.monotonic() < deadline, f"policy not in effect after {EFFECT_TIMEOUT}s"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def own_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """An API server of this module's own. Once the last binding with a ConfigMap paramKind is
    deleted (test_chart_cluster's helm uninstall does that), an API server process never sees
    ConfigMap params again and every binding that needs them refuses all writes with "no params
    found" (kubernetes/kubernetes#130887, #133827; docs/operator.md, "Sign-offs")."""
    for plane in start_server(request, KubeControlPlane, tmp_path_factory.mktemp("kube")):
        yield cluster_of(plane)


@pytest.fixture(scope="module")
def bed(
    chart: Chart, own_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bed]:
    cluster = own_cluster
    plane = cluster.plane
    plane.kubectl("apply", "-f", str(ROOT / "crds"))
    crd = f"crd/{PLURAL}.{GROUP}"
    plane.kubectl("wait", "--for=condition=Established", crd, "--timeout=60s")
    namespace = f"signoffs-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", namespace)
    release = f"so-{uuid.uuid4().hex[:6]}"  # the policy is cluster-scoped: a name of its own
    manifest = tmp_path_factory.mktemp("signoffs") / "policy.yaml"
    manifest.write_text(
        chart.template(namespace=namespace, release=release, show_only=(POLICY_TEMPLATE,))
    )
    plane.kubectl("apply", "-f", str(manifest))
    plane.kubectl("apply", "-f", "-", stdin=editor_rbac(namespace))
    kubeconfigs = {user: plane.kubeconfig_for(user, groups) for user, groups in USERS.items()}
    kubeconfigs["admin"] = plane.admin_kubeconfig
    apis = {
        user: client.CustomObjectsApi(config.new_client_from_config(config_file=str(path)))
        for user, path in kubeconfigs.items()
    }
    made = Bed(cluster, namespace, kubeconfigs, apis)
    wait_in_effect(made)
    yield made
    plane.kubectl("delete", "-f", str(manifest), "--wait=false")


def test_a_member_of_the_roles_group_signs_off_in_own_name(bed: Bed) -> None:
    name = bed.rollout()
    bed.annotate(name, signed("ops-manager", "alice"), by="alice")
    bed.annotate(name, signed("plant-manager", "bob"), by="bob")
    found = signoffs.parse(bed.annotations(name))
    assert {role: s.user for role, s in found.items()} == {
        "ops-manager": "alice",
        "plant-manager": "bob",
    }
    bed.annotate(name, signed("ops-manager", "alice"), by="alice")  # signing again: a new value


def test_a_user_outside_the_group_is_refused_with_role_user_and_group_named(bed: Bed) -> None:
    name = bed.rollout()
    status, message = refusal(
        lambda: bed.annotate(name, signed("ops-manager", "mallory"), by="mallory")
    )
    assert status == 403
    assert "user 'mallory' may not sign off as 'ops-manager'" in message
    assert "not in group 'plant-ops-managers'" in message
    assert signoffs.PREFIX + "ops-manager" not in bed.annotations(name)


def test_the_group_of_another_role_does_not_count(bed: Bed) -> None:
    name = bed.rollout()
    _, message = refusal(lambda: bed.annotate(name, signed("ops-manager", "bob"), by="bob"))
    assert "user 'bob' may not sign off as 'ops-manager': not in group 'plant-ops-managers'" in (
        message
    )


@pytest.mark.parametrize("value", ["bob@20260101T000000Z-abcdef", "alice", "alice@", "xalice@1"])
def test_nobody_signs_off_in_another_name(bed: Bed, value: str) -> None:
    name = bed.rollout()
    _, message = refusal(
        lambda: bed.annotate(name, {signoffs.key("ops-manager"): value}, by="alice")
    )
    assert "user 'alice' may sign off as 'ops-manager' only in their own name" in message
    assert f"not '{value}'" in message


def test_a_role_without_a_group_is_refused(bed: Bed) -> None:
    name = bed.rollout()
    _, message = refusal(lambda: bed.annotate(name, signed("auditor", "alice"), by="alice"))
    assert f"user 'alice' cannot sign off as 'auditor': ConfigMap {CONFIG_MAP}" in message


def test_other_writes_stay_open_to_anyone_who_may_patch(bed: Bed) -> None:
    name = bed.rollout()
    bed.annotate(name, signed("ops-manager", "alice"), by="alice")
    abort = commands.patch_for("abort")["metadata"]["annotations"]
    bed.annotate(name, {**abort, "example.com/note": "pager"}, by="mallory")
    got = bed.annotations(name)
    assert got[commands.ANNOTATION] == abort[commands.ANNOTATION]
    assert signoffs.parse(got)["ops-manager"].user == "alice"  # untouched, so not re-checked


def test_only_a_member_of_the_group_removes_a_sign_off(bed: Bed) -> None:
    name = bed.rollout()
    bed.annotate(name, signed("ops-manager", "alice"), by="alice")
    removal = {signoffs.key("ops-manager"): None}
    _, message = refusal(lambda: bed.annotate(name, removal, by="mallory"))
    assert "user 'mallory' may not sign off as 'ops-manager'" in message
    bed.annotate(name, removal, by="alice")
    assert signoffs.parse(bed.annotations(name)) == {}


def test_a_rollout_created_with_a_sign_off_is_checked_too(bed: Bed) -> None:
    forged = {signoffs.key("ops-manager"): signoffs.encode("alice")}
    _, message = refusal(lambda: bed.create("forged", forged, by="mallory"))
    assert "user 'mallory' may not sign off as 'ops-manager'" in message
    bed.create(f"own-{uuid.uuid4().hex[:6]}", forged, by="alice")


def plugin(bed: Bed, user: str, *argv: str) -> int:
    return kubectl_plugin.main(["--kubeconfig", str(bed.kubeconfigs[user]), "-n", bed.namespace,
                                *argv])  # fmt: skip


def test_the_cli_signs_off_as_the_caller_and_prints_a_refusal(
    bed: Bed, capsys: pytest.CaptureFixture[str]
) -> None:
    name = bed.rollout()
    assert plugin(bed, "alice", "approve", name, "--role", "ops-manager") == 0
    out, early = capsys.readouterr()
    assert "not waiting for a sign-off by ops-manager: this one does not count" in early
    assert (
        f"schedulerrollout {bed.namespace}/{name}: alice signed off as ops-manager (alice@" in out
    )
    assert signoffs.parse(bed.annotations(name))["ops-manager"].user == "alice"

    assert plugin(bed, "mallory", "approve", name, "--role", "plant-manager") == 1
    err = capsys.readouterr().err
    assert f"cannot sign off schedulerrollout {bed.namespace}/{name} as plant-manager: 403" in err
    assert "user 'mallory' may not sign off as 'plant-manager': not in group 'plant-managers'" in (
        err
    )
    assert plugin(bed, "alice", "approve", name, "--role", "Ops Manager") == 2  # not a role name

    assert plugin(bed, "mallory", "approve", name) == 0  # without --role: the command annotation
    assert commands.decode(bed.annotations(name)[commands.ANNOTATION]) == "approve"
