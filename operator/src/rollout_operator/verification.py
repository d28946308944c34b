"""The verify step's Job: built from the candidate's pod template, observed, stopped.

The Job runs the candidate's own image (its entrypoint is ``schedctl``) with ``verify-candidate``
as arguments, so the check runs the code and model that will serve: it replays the recorded
requests (the step's ConfigMap, mounted as files) through the candidate's Service and the
stable's, validates every answer and compares makespans, then load-tests the candidate. The
pod carries none of the candidate's labels, so no Service ever routes to it. Its verdict comes
back the way the kubelet returns a container's last words: the termination message
(``/dev/termination-log``, at most 4 KiB), which the operator reads from the pod's status.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubernetes import client

from rollout_operator.kube import created, none_if_missing
from rollout_operator.model import JobState, RoutingSpec, VerifyJob, VerifyStep
from rollout_operator.resource import GROUP
from rollout_operator.workloads import ROLLOUT_LABEL, main_container

Obj = dict[str, Any]

VERIFY_LABEL = f"{GROUP}/verify-job"
REQUESTS_DIR = "/verify/requests"
API_KEY_DIR = "/verify/api-key"
API_KEY_ITEM = "api-key"  # the key in the step's apiKeySecret
TERMINATION_LOG = "/dev/termination-log"
_DROPPED = ("readinessProbe", "livenessProbe", "startupProbe", "ports", "lifecycle")


def verify_args(step: VerifyStep, routing: RoutingSpec, namespace: str) -> list[str]:
    """``schedctl verify-candidate``'s arguments for this step (see docs/operator.md)."""

    def address(service: str) -> str:
        return f"{service}.{namespace}.svc:{routing.port}"

    args = [
        "verify-candidate",
        "--candidate", address(routing.canary_service),
        "--stable", address(routing.stable_service),
        "--requests", REQUESTS_DIR,
        "--max-makespan-ratio", f"{step.max_makespan_ratio:g}",
        "--result-file", TERMINATION_LOG,
    ]  # fmt: skip
    if step.load is not None:
        args += [
            "--concurrency", str(step.load.concurrency),
            "--load-requests", str(step.load.requests),
            "--p99-limit-seconds", f"{step.load.p99_s:g}",
        ]  # fmt: skip
    if step.api_key_secret:
        args += ["--api-key-file", f"{API_KEY_DIR}/{API_KEY_ITEM}"]
    return args


def _model_dir_args(container: Obj) -> list[str]:
    """The server's ``--model-dir`` as the template passes it (``--model-dir=D`` or
    ``--model-dir D``): the check compares the model the candidate serves with the one its
    image ships. A template that sets ``SCHEDULER_MODEL_DIR`` instead keeps it in the env."""
    args = [str(a) for a in container.get("args") or []]
    for i, arg in enumerate(args):
        if arg.startswith("--model-dir="):
            return [arg]
        if arg == "--model-dir" and i + 1 < len(args):
            return [arg, args[i + 1]]
    return []


def build_job(
    candidate: Obj,
    step: VerifyStep,
    routing: RoutingSpec,
    *,
    namespace: str,
    rollout: str,
    name: str,
    owner_ref: Obj,
) -> Obj:
    """The Job, from the candidate Deployment as the API returned it."""
    template = copy.deepcopy(candidate["spec"]["template"])
    labels = {ROLLOUT_LABEL: rollout, VERIFY_LABEL: name}
    template["metadata"] = {"labels": labels}
    spec = template.setdefault("spec", {})
    container = main_container(template)
    spec["containers"] = [container]  # sidecars would keep the Job running for ever
    spec["restartPolicy"] = "Never"
    for key in _DROPPED:
        container.pop(key, None)
    container["args"] = verify_args(step, routing, namespace) + _model_dir_args(container)
    container["terminationMessagePath"] = TERMINATION_LOG
    container["terminationMessagePolicy"] = "File"
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") != "verify-requests"]
    source = step.replay_volume or {"configMap": {"name": step.replay_config_map}}
    volumes.append({"name": "verify-requests", **copy.deepcopy(source)})
    mounts = [
        m for m in container.get("volumeMounts") or [] if not m["mountPath"].startswith("/verify")
    ]
    requests = {"name": "verify-requests", "mountPath": REQUESTS_DIR, "readOnly": True}
    if step.replay_sub_path:
        requests["subPath"] = step.replay_sub_path
    mounts.append(requests)
    if step.api_key_secret:
        volumes.append({"name": "verify-api-key", "secret": {"secretName": step.api_key_secret}})
        mounts.append({"name": "verify-api-key", "mountPath": API_KEY_DIR, "readOnly": True})
    spec["volumes"], container["volumeMounts"] = volumes, mounts
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_ref],
        },
        "spec": {
            "backoffLimit": 0,  # a failed check is a verdict, not a flake to retry
            "activeDeadlineSeconds": max(1, round(step.timeout_s)),
            "ttlSecondsAfterFinished": 86400,  # kept a day for `kubectl logs`, then collected
            "template": template,
        },
    }


def create_job(batch: client.BatchV1Api, job: Obj) -> None:
    """Create the Job; one of that name already there is this attempt's (the name is unique)."""
    created(
        lambda: batch.create_namespaced_job(
            job["metadata"]["namespace"], client.V1Job.model_validate(job)
        )
    )


def observe(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str, name: str
) -> VerifyJob:
    """The Job's state, result and reason as the cluster shows them now."""
    job = none_if_missing(lambda: batch.read_namespaced_job(name, namespace))
    if job is None or (job.metadata is not None and job.metadata.deletion_timestamp is not None):
        return VerifyJob(JobState.ABSENT)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{VERIFY_LABEL}={name}").items
    terminated, running, waiting = _containers(pods)
    result = _result(terminated.message if terminated is not None else None)
    found = job.status.conditions if job.status is not None else None
    conditions = {c.type: c for c in found or [] if c.status == "True"}
    if "Complete" in conditions:
        return VerifyJob(JobState.SUCCEEDED, result, conditions["Complete"].reason or "")
    if "Failed" in conditions:
        return VerifyJob(JobState.FAILED, result, conditions["Failed"].reason or "")
    if running or terminated is not None:
        return VerifyJob(JobState.RUNNING, result)
    return VerifyJob(JobState.WAITING, None, waiting)


def _containers(pods: list[Any]) -> tuple[Any, bool, str]:
    """The Job's container as its pods show it: the terminated state (if it ended), whether it
    runs, and why it waits (``ErrImagePull: ...``)."""
    terminated, running, waiting = None, False, ""
    statuses = [s for pod in pods if pod.status for s in pod.status.container_statuses or []]
    for state in (s.state for s in statuses if s.state is not None):
        if state.terminated is not None:
            terminated = state.terminated
        running = running or state.running is not None
        if state.waiting is not None and state.waiting.reason:
            message = state.waiting.message
            waiting = state.waiting.reason + (f": {message}" if message else "")
    return terminated, running, waiting


def stop_active(batch: client.BatchV1Api, namespace: str, rollout: str) -> None:
    """Delete the rollout's verify Jobs that still run (a rollback ends the check; finished
    Jobs stay for their logs until their TTL)."""
    jobs = batch.list_namespaced_job(
        namespace, label_selector=f"{ROLLOUT_LABEL}={rollout},{VERIFY_LABEL}"
    )
    for job in jobs.items:
        name = job.metadata.name if job.metadata is not None else None
        if name and job.status is not None and job.status.active:
            _delete_job(batch, namespace, name)


def _delete_job(batch: client.BatchV1Api, namespace: str, name: str) -> None:
    none_if_missing(
        lambda: batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    )


def _result(message: str | None) -> dict[str, object] | None:
    """The verdict JSON the container left; None when there is none or it does not parse."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
