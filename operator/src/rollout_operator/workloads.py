"""The candidate Deployment: made from the stable one, scaled, promoted into it, cleaned up.

Names and labels (what users put in their Services):

- the candidate Deployment is ``<target>-candidate``, one per stable Deployment (two rollouts of
  the same target cannot run at once); its selector is ``rollouts.scheduling.io/candidate:
  <target>``, a label the stable pods never carry, so the two selectors never overlap;
- its pods carry the stable template's labels with ``track`` set to ``canary`` or ``shadow``,
  plus ``rollouts.scheduling.io/candidate`` and ``rollouts.scheduling.io/rollout``. The stable
  Deployment's selector should include ``track: stable`` so that it never matches them;
- during shadow the candidate pods must never answer real clients, so ``ensure_candidate`` drops
  from shadow pods the labels through which the stable Service's selector (``hide_from``) would
  select them. During canary they keep them: the replica-ratio router relies on the stable Service
  selecting both tracks;
- the canary Service: see ``rollout_operator.services``.

The candidate's container is the stable's container named ``scheduler``, else its first one; it
gets the candidate image, ``MODEL_VERSION``, ``SCHEDULER_TRACK`` (the metric label) and the extra
env. The revision (``status.candidateRevision``) is a hash of the resulting pod template.
A Deployment is available when its ``status`` passes the test ``kubectl rollout status``
applies (``_available``): the rollout moves on only once every pod runs the current template.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout_operator.actions import Track
from rollout_operator.kube import none_if_missing, retry_on_conflict
from rollout_operator.model import CandidateSpec
from rollout_operator.resource import GROUP, MANAGED_BY

Obj = dict[str, Any]

TRACK_LABEL = "track"
CANDIDATE_LABEL = f"{GROUP}/candidate"
ROLLOUT_LABEL = f"{GROUP}/rollout"
REVISION_ANNOTATION = f"{GROUP}/revision"
PROMOTED_ANNOTATION = f"{GROUP}/promoted-revision"
MAIN_CONTAINER = "scheduler"
TRACK_ENV = "SCHEDULER_TRACK"
MODEL_VERSION_ENV = "MODEL_VERSION"
TARGET_FIELD = "spec.targetRef.name"
_COPIED_SPEC = ("minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit", "strategy")


class WorkloadError(RuntimeError):
    """A Deployment the rollout needs is missing or unusable; ``field`` names the
    spec field at fault (the handler turns it into phase Invalid)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def candidate_name(target: str) -> str:
    return f"{target}-candidate"


# --- pure: the candidate's pod template ----------------------------------------------------------


def main_container(template: Obj) -> Obj:
    """The container named ``scheduler``, else the first one."""
    containers: list[Obj] = template.get("spec", {}).get("containers") or []
    if not containers:
        raise WorkloadError("the pod template has no containers", field=TARGET_FIELD)
    named = [c for c in containers if c.get("name") == MAIN_CONTAINER]
    return named[0] if named else containers[0]


def set_env(container: Obj, name: str, value: str) -> None:
    """Set ``name`` to ``value``, replacing any entry of that name (``valueFrom`` included)."""
    env: list[Obj] = container.setdefault("env", [])
    entry = {"name": name, "value": value}
    for i, item in enumerate(env):
        if item.get("name") == name:
            env[i] = entry
            return
    env.append(entry)


def template_revision(template: Obj) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _pod_labels(
    stable: Mapping[str, str], track: Track, target: str, rollout: str, hide_from: Mapping[str, str]
) -> dict[str, str]:
    labels = {**stable, TRACK_LABEL: track, CANDIDATE_LABEL: target, ROLLOUT_LABEL: rollout}
    selected = bool(hide_from) and all(labels.get(k) == v for k, v in hide_from.items())
    if track == "shadow" and selected:
        ours = {TRACK_LABEL, CANDIDATE_LABEL, ROLLOUT_LABEL}
        removable = [k for k in hide_from if k not in ours]
        if not removable:
            raise WorkloadError(
                f"the stable Service selects the candidate's own labels {dict(hide_from)}",
                field="spec.routing.stableService",
            )
        for key in removable:
            del labels[key]
    return labels


def candidate_template(
    stable_template: Obj,
    candidate: CandidateSpec,
    *,
    track: Track,
    target: str,
    rollout: str,
    hide_from: Mapping[str, str] | None = None,
) -> Obj:
    """The stable pod template turned into the candidate's (a new dict; the input is kept)."""
    template = copy.deepcopy(stable_template)
    meta = template.setdefault("metadata", {})
    meta["labels"] = _pod_labels(meta.get("labels") or {}, track, target, rollout, hide_from or {})
    container = main_container(template)
    if candidate.image:
        container["image"] = candidate.image
    if candidate.model_version:
        set_env(container, MODEL_VERSION_ENV, candidate.model_version)
    set_env(container, TRACK_ENV, track)
    for name, value in candidate.env:
        set_env(container, name, value)
    return template


# --- API helpers ---------------------------------------------------------------------------------


class ReadOnceAppsApi(client.AppsV1Api):
    """The apps API for one reconcile: each Deployment is fetched once and the answer (a 404
    too) reused, since the reconcile asks for the stable Deployment up to four times and for the
    candidate twice. Any write through it forgets every answer, so what follows the write, and
    the retry after a 409, reads afresh. Make a new one for each reconcile: it never expires."""

    def __init__(self, api_client: client.ApiClient) -> None:
        super().__init__(api_client)
        self._answers: dict[tuple[str, str], Any] = {}  # a V1Deployment, or the 404

    def read_namespaced_deployment(
        self, name: str, namespace: str, *args: Any, **kwargs: Any
    ) -> Any:
        if args or kwargs:  # options: not what the reconcile asks, not remembered
            return super().read_namespaced_deployment(name, namespace, *args, **kwargs)
        key = (namespace, name)
        if key not in self._answers:
            try:
                self._answers[key] = super().read_namespaced_deployment(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self._answers[key] = exc
        answer = self._answers[key]
        if isinstance(answer, ApiException):
            raise answer
        return answer

    def create_namespaced_deployment(self, *args: Any, **kwargs: Any) -> Any:
        self._answers.clear()
        return super().create_namespaced_deployment(*args, **kwargs)

    def replace_namespaced_deployment(self, *args: Any, **kwargs: Any) -> Any:
        self._answers.clear()
        return super().replace_namespaced_deployment(*args, **kwargs)

    def patch_namespaced_deployment(self, *args: Any, **kwargs: Any) -> Any:
        self._answers.clear()
        return super().patch_namespaced_deployment(*args, **kwargs)

    def delete_namespaced_deployment(self, *args: Any, **kwargs: Any) -> Any:
        self._answers.clear()
        return super().delete_namespaced_deployment(*args, **kwargs)


def _to_dict(api: Any, obj: Any) -> Obj:
    data: Obj = api.api_client.sanitize_for_serialization(obj)
    return data


def _read_deployment(apps_api: client.AppsV1Api, namespace: str, name: str) -> Obj | None:
    found = none_if_missing(lambda: apps_api.read_namespaced_deployment(name, namespace))
    return None if found is None else _to_dict(apps_api, found)


def _read_stable(apps_api: client.AppsV1Api, namespace: str, target: str) -> Obj:
    stable = _read_deployment(apps_api, namespace, target)
    if stable is None:
        raise WorkloadError(
            f"Deployment {namespace}/{target} not found ({TARGET_FIELD})", field=TARGET_FIELD
        )
    return stable


def read_candidate(apps_api: client.AppsV1Api, namespace: str, target: str) -> Obj:
    name = candidate_name(target)
    found = _read_deployment(apps_api, namespace, name)
    if found is None:
        raise WorkloadError(
            f"candidate Deployment {namespace}/{name} not found", field="spec.candidate"
        )
    return found


def _replace(apps_api: client.AppsV1Api, namespace: str, body: Obj) -> None:
    name = body["metadata"]["name"]
    apps_api.replace_namespaced_deployment(
        name, namespace, client.V1Deployment.model_validate(body)
    )


def _available(dep: Obj) -> bool:
    """``kubectl rollout status``'s test: the current spec observed, every replica updated and
    available, no old replica left."""
    want = int(dep["spec"].get("replicas", 1))
    status = dep.get("status") or {}
    updated = int(status.get("updatedReplicas", 0))
    return bool(
        status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        and updated >= want
        and status.get("availableReplicas", 0) >= want
        and status.get("replicas", 0) <= updated
    )


# --- the candidate ---------------------------------------------------------------------------


def ensure_candidate(  # noqa: PLR0917 - these name the candidate; the options are keyword-only
    apps_api: client.AppsV1Api,
    namespace: str,
    target: str,
    candidate: CandidateSpec,
    track: Track,
    rollout_name: str,
    owner_ref: Mapping[str, Any] | None,
    *,
    hide_from: Mapping[str, str] | None = None,
    replicas: int | None = None,
) -> str:
    """Create or update ``<target>-candidate``; returns its revision. ``replicas`` None keeps the
    current count (0 for a new candidate: a router or ``scale_candidate`` sizes it)."""
    stable = _read_stable(apps_api, namespace, target)
    template = candidate_template(
        stable["spec"]["template"],
        candidate,
        track=track,
        target=target,
        rollout=rollout_name,
        hide_from=hide_from,
    )
    revision = template_revision(template)
    labels = {
        **MANAGED_BY,
        CANDIDATE_LABEL: target,
        ROLLOUT_LABEL: rollout_name,
        TRACK_LABEL: track,
    }

    def attempt() -> None:
        body = _read_deployment(apps_api, namespace, candidate_name(target))
        if body is None:
            _create_candidate(
                apps_api,
                namespace,
                target,
                stable=stable,
                template=template,
                labels=labels,
                owner_ref=owner_ref,
            )
            if replicas:
                scale_candidate(apps_api, namespace, target, replicas)
        elif body["spec"]["selector"] != {"matchLabels": {CANDIDATE_LABEL: target}}:
            raise WorkloadError(
                f"Deployment {namespace}/{candidate_name(target)} exists and was not made by the "
                "rollout operator (its selector differs)",
                field=TARGET_FIELD,
            )
        elif _update_candidate(body, template, labels, owner_ref, replicas):
            _replace(apps_api, namespace, body)

    retry_on_conflict(attempt)
    return revision


def _update_candidate(
    body: Obj,
    template: Obj,
    labels: Mapping[str, str],
    owner_ref: Mapping[str, Any] | None,
    replicas: int | None,
) -> bool:
    """Bring the candidate ``body`` (as read) up to date in place; False when it already was."""
    meta = body["metadata"]
    revision = template_revision(template)
    current = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
    want = body["spec"].get("replicas") if replicas is None else replicas
    same_labels = all((meta.get("labels") or {}).get(k) == v for k, v in labels.items())
    if current == revision and want == body["spec"].get("replicas") and same_labels:
        return False
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), REVISION_ANNOTATION: revision}
    if owner_ref:
        meta["ownerReferences"] = [dict(owner_ref)]
    body["spec"]["template"] = template
    body["spec"]["replicas"] = want
    return True


def _create_candidate(
    apps_api: client.AppsV1Api,
    namespace: str,
    target: str,
    *,
    stable: Obj,
    template: Obj,
    labels: Mapping[str, str],
    owner_ref: Mapping[str, Any] | None,
) -> None:
    meta: Obj = {
        "name": candidate_name(target),
        "labels": dict(labels),
        "annotations": {REVISION_ANNOTATION: template_revision(template)},
    }
    if owner_ref:
        meta["ownerReferences"] = [dict(owner_ref)]
    spec: Obj = {k: stable["spec"][k] for k in _COPIED_SPEC if k in stable["spec"]}
    spec |= {
        "replicas": 0,
        "selector": {"matchLabels": {CANDIDATE_LABEL: target}},
        "template": template,
    }
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
    apps_api.create_namespaced_deployment(namespace, client.V1Deployment.model_validate(body))


def candidate_available(apps_api: client.AppsV1Api, namespace: str, target: str) -> bool:
    dep = _read_deployment(apps_api, namespace, candidate_name(target))
    return dep is not None and _available(dep)


def scale_candidate(apps_api: client.AppsV1Api, namespace: str, target: str, replicas: int) -> None:
    name = candidate_name(target)
    patch = {"spec": {"replicas": replicas}}
    scaled = none_if_missing(lambda: apps_api.patch_namespaced_deployment(name, namespace, patch))
    if scaled is None:
        raise WorkloadError(
            f"candidate Deployment {namespace}/{name} not found", field="spec.candidate"
        )


def scale_down_candidate(apps_api: client.AppsV1Api, namespace: str, target: str) -> None:
    """Rollback: no candidate pods, but the Deployment (its spec, its events) stays for
    root-cause analysis. A candidate that is already gone is fine."""
    with contextlib.suppress(WorkloadError):
        scale_candidate(apps_api, namespace, target, 0)


def remove_candidate(apps_api: client.AppsV1Api, namespace: str, target: str) -> None:
    """Delete the candidate Deployment (after promotion, and by the finalizer); idempotent."""
    none_if_missing(
        lambda: apps_api.delete_namespaced_deployment(
            candidate_name(target), namespace, propagation_policy="Background"
        )
    )


# --- the stable ------------------------------------------------------------------------------


def promote_stable(apps_api: client.AppsV1Api, namespace: str, target: str) -> str:
    """Copy the candidate's image and env into the stable Deployment's main container (with
    ``SCHEDULER_TRACK=stable``); labels and selector stay. Returns the new stable revision.
    Idempotent: promoting twice changes nothing the second time."""

    def attempt() -> str:
        stable = _read_stable(apps_api, namespace, target)
        cand = read_candidate(apps_api, namespace, target)
        dst = main_container(stable["spec"]["template"])
        src = next(
            c for c in cand["spec"]["template"]["spec"]["containers"] if c["name"] == dst["name"]
        )
        dst["image"] = src["image"]
        dst["env"] = copy.deepcopy(src.get("env") or [])
        set_env(dst, TRACK_ENV, "stable")
        revision = (cand["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "")
        annotations = stable["metadata"].setdefault("annotations", {})
        annotations[PROMOTED_ANNOTATION] = revision
        _replace(apps_api, namespace, stable)
        return template_revision(stable["spec"]["template"])

    return retry_on_conflict(attempt)


def stable_available(apps_api: client.AppsV1Api, namespace: str, target: str) -> bool:
    return _available(_read_stable(apps_api, namespace, target))


def stable_revision(apps_api: client.AppsV1Api, namespace: str, target: str) -> str:
    """A hash of the stable pod template (``status.stableRevision``)."""
    return template_revision(_read_stable(apps_api, namespace, target)["spec"]["template"])


def stable_replicas(apps_api: client.AppsV1Api, namespace: str, target: str) -> int:
    """The stable Deployment's replica count as its spec has it."""
    return int(_read_stable(apps_api, namespace, target)["spec"].get("replicas", 1))
