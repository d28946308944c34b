"""The plan's gates on the end-to-end platform: the verify Job (run by the real Job controller on
the node), sign-offs whose identities the API server checks, and the sequential shadow verdict
from the stable pods' paired answers. Every plant has the approvers ConfigMap, the replay
ConfigMap and the verify key Secret (testbed.gates), as a platform team would set them up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rollout_operator.kubectl_plugin import main as schedrollout
from testbed.e2e import Plant, example_rollout
from tests.e2e.conftest import MakePlant
from tests.e2e.test_drills import (
    CANARY_SVC,
    CANDIDATE,
    INTERVAL_S,
    STEP_S,
    TIMEOUT_S,
    assert_clients_served,
    assert_routed_to_stable,
)

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
MIN_SAMPLES = 20  # the mean comparison's default: mirrored answers in the window before it judges


def gated(plant: Plant, name: str, env: dict[str, str] | None = None, **analysis: Any) -> Obj:
    """examples/rollout.yaml with its gates: verify, shadow (sequential test), sign-offs."""
    return example_rollout(
        name, plant.platform.prometheus.url, step_s=STEP_S, interval_s=INTERVAL_S,
        extra_env=env, gates=True, **analysis,
    )  # fmt: skip


def verify_step(body: Obj) -> Obj:
    return next(s["verify"] for s in body["spec"]["steps"] if "verify" in s)


def sign_off(plant: Plant, user: str, name: str, role: str) -> int:
    kubeconfig = str(plant.platform.kubeconfigs[user])
    return schedrollout(
        ["--kubeconfig", kubeconfig, "-n", plant.namespace, "approve", name, "--role", role]
    )


def never_routed(plant: Plant, *, verified: bool = True) -> None:
    """No client call, no mirrored copy reached the candidate (the verify Job's calls did, when
    it ran: counted from the candidate's logs, since the rollback can remove its pods before
    Prometheus scrapes their last answers)."""
    assert all(w == 0 for w in plant.routes.weights() or [0]), plant.routes.weights()
    assert plant.mirrored_copies() == 0
    assert (plant.shadow_answers_logged() > 0) is verified


def test_gated_promotion_with_two_sign_offs_and_a_refused_one(
    make_plant: MakePlant, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plant = make_plant()
    plant.start_operator()
    since = time.time()
    plant.apply(gated(plant, "gated"))

    status = plant.wait_phase("gated", "AwaitingApproval", TIMEOUT_S)
    verification = status["verification"]
    assert verification["state"] == "Passed", verification
    result = verification["result"]
    assert result["passed"] and result["replay"]["invalid"] == 0
    assert result["replay"]["meanRatio"] <= 1.0
    assert result["load"]["p99Seconds"] <= 1.0 and result["load"]["errors"] == 0
    assert status["gate"] == "sign-offs 0/2"

    capsys.readouterr()
    assert sign_off(plant, "mallory", "gated", "ops-manager") == 1
    refused = capsys.readouterr().err
    assert "ops-manager" in refused and "mallory" in refused, refused
    assert sign_off(plant, "alice", "gated", "ops-manager") == 0
    assert sign_off(plant, "bob", "gated", "plant-manager") == 0
    assert "does not count" not in capsys.readouterr().err  # both signed at the right step

    status = plant.wait_phase("gated", "Succeeded", TIMEOUT_S)
    signed = [(o["role"], o["user"]) for o in status["signOffs"]]
    assert signed == [("ops-manager", "alice"), ("plant-manager", "bob")]
    phases = [h["phase"] for h in status["history"]]
    assert phases[:3] == ["Pending", "Verifying", "Shadow"]
    assert "AwaitingApproval" in phases and phases[-1] == "Succeeded"
    assert_routed_to_stable(plant)
    assert_clients_served(plant.traffic.outcomes(since))
    assert plant.mirrored_copies() > 0  # the query never_routed relies on sees the mirror

    out = tmp_path / "report"
    kubeconfig = str(plant.platform.kube.admin_kubeconfig)
    args = ["--kubeconfig", kubeconfig, "-n", plant.namespace, "report", "gated", "--out", str(out)]
    assert schedrollout(args) == 0
    markdown = (out / "gated.md").read_text()
    assert "alice" in markdown and "bob" in markdown
    assert (out / "gated.png").read_bytes().startswith(b"\x89PNG")


def test_verify_rolls_back_a_candidate_with_longer_plans(make_plant: MakePlant) -> None:
    plant = make_plant()
    plant.start_operator()
    # EDD plans are longer than the stable legacy rule's (MWKR) on these shops (about 1.14x).
    plant.apply(gated(plant, "longer", env={"SCHEDULER_DEFAULT_POLICY": "edd"}))
    status = plant.wait_phase("longer", "RolledBack", TIMEOUT_S)

    assert status["rollbackReason"].startswith("verification failed: verify Job"), status
    assert "replay" in status["rollbackReason"]
    result = status["verification"]["result"]
    assert result["passed"] is False
    assert result["replay"]["meanRatio"] > 1.0
    assert "load" not in result  # the replay failed first
    verified = next(c for c in status["conditions"] if c["type"] == "Verified")
    assert verified["status"] == "False"
    never_routed(plant)


def test_verify_load_test_fails_a_candidate_slower_than_the_limit(make_plant: MakePlant) -> None:
    plant = make_plant()
    plant.start_operator()
    plant.set_candidate_faults(latency_ms=1500)  # read by the candidate's pods from their start
    body = gated(plant, "slow", env={"SCHEDULER_ENABLE_FAULTS": "1"})
    verify_step(body).update(
        load={"concurrency": 4, "requests": 16, "p99": "1s"}, maxMakespanRatio=1.2
    )
    plant.apply(body)
    status = plant.wait_phase("slow", "RolledBack", TIMEOUT_S)

    reason = status["rollbackReason"]
    assert reason.startswith("verification failed: verify Job") and "load" in reason, reason
    load = status["verification"]["result"]["load"]
    assert load["p99Seconds"] > 1.0 and load["limitSeconds"] == 1.0
    never_routed(plant)


def test_the_sequential_test_rolls_back_a_worse_candidate_before_min_samples(
    make_plant: MakePlant,
) -> None:
    plant = make_plant(rate=2.0)
    plant.start_operator()
    body = gated(plant, "worse-in-shadow", env={"SCHEDULER_DEFAULT_POLICY": "edd"})
    spec = body["spec"]
    spec["steps"] = [s for s in spec["steps"] if "verify" not in s]
    spec["steps"][0]["shadow"]["duration"] = "120s"
    spec["analysis"]["shadowCompare"]["minSamples"] = MIN_SAMPLES
    plant.apply(body)
    status = plant.wait_phase("worse-in-shadow", "RolledBack", TIMEOUT_S)

    assert status["rollbackReason"].startswith("candidate worse in shadow: shadow-sequential")
    verdict = status["shadowVerdict"]
    assert verdict["decision"] == "worse"
    assert verdict["pairs"] < MIN_SAMPLES, verdict
    assert verdict["ciLow"] > 0.5, verdict  # the interval excludes "no worse"
    print(f"sequential test: rolled back after {verdict['pairs']} pairs "
          f"({verdict['worse']} worse, {verdict['better']} better, {verdict['equal']} equal); "
          f"the mean comparison needs {MIN_SAMPLES} mirrored answers")  # fmt: skip
    assert plant.route().weight_of(CANARY_SVC) == 0


def test_a_verify_job_that_never_starts_rolls_back_with_the_pods_reason(
    make_plant: MakePlant,
) -> None:
    plant = make_plant()
    plant.start_operator()
    body = gated(plant, "no-replay")
    verify_step(body).update(replay={"configMap": "no-such-requests"}, timeout="10s")
    plant.apply(body)
    status = plant.wait_phase("no-replay", "RolledBack", TIMEOUT_S)

    reason = status["rollbackReason"]
    assert "no container started within" in reason, reason
    assert 'configmap "no-such-requests" not found' in reason, reason
    assert status["verification"]["started"] is False
    never_routed(plant, verified=False)


def test_a_deleted_verify_job_rolls_back(make_plant: MakePlant) -> None:
    plant = make_plant()
    plant.start_operator()
    plant.set_candidate_faults(latency_ms=3000)  # the replay takes long enough to delete it
    plant.apply(gated(plant, "deleted", env={"SCHEDULER_ENABLE_FAULTS": "1"}))
    status = plant.wait_for(
        "deleted",
        lambda s: (s.get("verification") or {}).get("state") == "Running",
        TIMEOUT_S,
        "the verify Job running",
    )
    job = status["verification"]["job"]
    client.BatchV1Api(plant.platform.api).delete_namespaced_job(
        job, plant.namespace, propagation_policy="Background"
    )
    status = plant.wait_phase("deleted", "RolledBack", TIMEOUT_S)
    assert status["rollbackReason"] == (
        f"verification failed: verify Job {job} was deleted before it finished"
    )
    assert plant.deployment(CANDIDATE)["spec"]["replicas"] == 0  # type: ignore[index]
