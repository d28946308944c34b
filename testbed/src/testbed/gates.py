"""What the plan's gates need on the end-to-end platform, set up as a platform team would.

- The sign-off policy: the chart's ValidatingAdmissionPolicy (its CEL is the chart's file, read
  here, not copied), a binding to each plant's approvers ConfigMap, and RBAC that lets the
  plant's people patch rollouts. Who may sign as which role is then the API server's decision.
- People: ``alice`` (group plant-ops-managers), ``bob`` (plant-managers) and ``mallory``
  (plant-engineers), each with a client certificate and a kubeconfig of their own.
- Per plant: the approvers ConfigMap (role -> group), the recorded requests the verify step
  replays (a ConfigMap of request JSON files), and the API key its Job calls with (a Secret).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from jobshop_scheduler.domain.codec import problem_to_dict
from jobshop_scheduler.instances.taillard import taillard
from testbed.kube import KubeControlPlane, KubectlError

REPO_ROOT = Path(__file__).resolve().parents[3]
POLICY_SPEC = REPO_ROOT / "charts" / "scheduler-rollouts" / "files" / "signoff-policy.yaml"
POLICY = "schedrollout-signoffs"
APPROVERS_CONFIG_MAP = "schedrollout-approvers"  # the chart's default name
ROLES = {"ops-manager": "plant-ops-managers", "plant-manager": "plant-managers"}
USERS = {
    "alice": ("plant-ops-managers",),
    "bob": ("plant-managers",),
    "mallory": ("plant-engineers",),
}
REPLAY_CONFIG_MAP = "scheduler-replay"
API_KEY_SECRET = "scheduler-verify-key"
REPLAY_SIZES = ((20, 10), (30, 10), (20, 15))  # the plants' request shapes
EFFECT_TIMEOUT_S = 30.0

Obj = dict[str, Any]


def policy_objects() -> Iterator[Obj]:
    """The policy, its binding (every namespace: each plant has the approvers ConfigMap) and
    the role that lets the plant's people read and patch rollouts."""
    spec = yaml.safe_load(POLICY_SPEC.read_text())
    yield {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY},
        "spec": spec,
    }
    yield {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY},
        "spec": {
            "policyName": POLICY,
            "validationActions": ["Deny"],
            "paramRef": {"name": APPROVERS_CONFIG_MAP, "parameterNotFoundAction": "Deny"},
        },
    }
    yield {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "schedrollout-editor"},
        "rules": [
            {
                "apiGroups": ["rollouts.scheduling.io"],
                "resources": ["schedulerrollouts"],
                "verbs": ["get", "list", "watch", "patch"],
            }
        ],
    }
    yield {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "schedrollout-editors"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "schedrollout-editor",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
            for group in sorted({g for groups in USERS.values() for g in groups})
        ],
    }


def install_policy(kube: KubeControlPlane) -> dict[str, Path]:
    """The policy and RBAC applied; each person's kubeconfig by name."""
    for body in policy_objects():
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))
    return {user: kube.kubeconfig_for(user, groups) for user, groups in USERS.items()}


def replay_requests(seed: int = 16, count: int = 8) -> dict[str, str]:
    """Recorded requests as the verify step's ConfigMap holds them: ``<name>.json`` -> the
    request JSON of docs/request-format.md, without a policy (each server's default answers)."""
    rng = random.Random(seed)
    files = {}
    for i in range(count):
        jobs, machines = REPLAY_SIZES[i % len(REPLAY_SIZES)]
        problem = taillard(jobs, machines, rng.randrange(1, 2**31 - 1), rng.randrange(1, 2**31 - 1))
        document = problem_to_dict(problem)
        document["request_id"] = f"replay-{i}"
        files[f"replay-{i}.json"] = json.dumps(document)
    return files


def plant_objects(api_key: str) -> Iterator[Obj]:
    """The approvers ConfigMap, the replay ConfigMap and the verify Job's API key Secret."""
    yield {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": APPROVERS_CONFIG_MAP},
        "data": dict(ROLES),
    }
    yield {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": REPLAY_CONFIG_MAP},
        "data": replay_requests(),
    }
    yield {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": API_KEY_SECRET},
        "stringData": {"api-key": api_key},
    }


def wait_in_effect(kube: KubeControlPlane, namespace: str) -> None:
    """Dry-run a forged sign-off until the API server refuses it: the policy, its binding and
    the approvers ConfigMap reach the admission plugin through informers, a moment after they
    are made."""
    probe = {
        "apiVersion": "rollouts.scheduling.io/v1alpha1",
        "kind": "SchedulerRollout",
        "metadata": {
            "name": "signoff-probe",
            "annotations": {"signoff.rollouts.scheduling.io/ops-manager": "nobody@probe"},
        },
        "spec": {
            "targetRef": {"name": "scheduler"},
            "candidate": {"image": "probe"},
            "routing": {"provider": "replicas", "stableService": "a", "canaryService": "b"},
        },
    }
    deadline = time.monotonic() + EFFECT_TIMEOUT_S
    while True:
        try:
            kube.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                         stdin=yaml.safe_dump(probe))  # fmt: skip
        except KubectlError as exc:
            if "denied request" in str(exc):
                return
            raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sign-off policy is not in effect after {EFFECT_TIMEOUT_S}s")
        time.sleep(0.25)
