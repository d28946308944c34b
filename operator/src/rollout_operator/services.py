"""The Services a rollout routes between: the stable one (the user's) and the canary one.

The canary Service (``spec.routing.canaryService``) is the user's when it exists, and is then
never touched. When it is missing, ``ensure_canary_service`` creates it with the stable Service's
ports, selecting ``rollouts.scheduling.io/candidate: <target>`` (the candidate pods in either
track), owned by the rollout so that deleting the rollout deletes it. A headless stable Service
(``clusterIP: None``, common for gRPC, whose clients balance over pod IPs) gets a headless canary
Service: the stable pods' mirror and the clients then resolve both the same way. A user-made
canary Service should use the same selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from rollout_operator.kube import created, none_if_missing
from rollout_operator.model import RoutingSpec
from rollout_operator.resource import MANAGED_BY
from rollout_operator.workloads import CANDIDATE_LABEL

STABLE_FIELD = "spec.routing.stableService"
_PORT_FIELDS = ("name", "port", "targetPort", "protocol", "appProtocol")


class ServiceError(RuntimeError):
    """The stable Service is missing; ``field`` names the spec field (phase Invalid)."""

    def __init__(self, message: str, *, field: str = STABLE_FIELD) -> None:
        super().__init__(message)
        self.field = field


def _read_stable(core_api: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    svc = none_if_missing(lambda: core_api.read_namespaced_service(name, namespace))
    if svc is None:
        raise ServiceError(f"Service {namespace}/{name} not found ({STABLE_FIELD})")
    data: dict[str, Any] = core_api.api_client.sanitize_for_serialization(svc)
    return data


def service_selector(core_api: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    """The stable Service's selector: ``hide_from`` for ``workloads.ensure_candidate``."""
    return dict(_read_stable(core_api, namespace, name)["spec"].get("selector") or {})


def made_by_operator(core_api: client.CoreV1Api, namespace: str, routing: RoutingSpec) -> bool:
    """Whether the canary Service is the one ``ensure_canary_service`` made (it is deleted with
    the rollout), not the user's."""
    svc = none_if_missing(
        lambda: core_api.read_namespaced_service(routing.canary_service, namespace)
    )
    labels = (svc.metadata.labels or {}) if svc is not None and svc.metadata else {}
    return all(labels.get(k) == v for k, v in MANAGED_BY.items()) and CANDIDATE_LABEL in labels


def ensure_canary_service(
    core_api: client.CoreV1Api,
    namespace: str,
    routing: RoutingSpec,
    target: str,
    owner_ref: Mapping[str, Any] | None,
) -> bool:
    """Create the canary Service when it is missing (True); an existing one is left alone."""
    canary = none_if_missing(
        lambda: core_api.read_namespaced_service(routing.canary_service, namespace)
    )
    if canary is not None:
        return False
    stable = _read_stable(core_api, namespace, routing.stable_service)
    ports = [{k: p[k] for k in _PORT_FIELDS if k in p} for p in stable["spec"].get("ports") or []]
    meta: dict[str, Any] = {
        "name": routing.canary_service,
        "labels": {**MANAGED_BY, CANDIDATE_LABEL: target},
    }
    if owner_ref:
        meta["ownerReferences"] = [dict(owner_ref)]
    spec: dict[str, Any] = {"selector": {CANDIDATE_LABEL: target}, "ports": ports}
    if stable["spec"].get("clusterIP") == "None":
        spec["clusterIP"] = "None"
    body = {"metadata": meta, "spec": spec}
    service = client.V1Service.model_validate(body)
    # False: made meanwhile, it is somebody's now
    return created(lambda: core_api.create_namespaced_service(namespace, service))
