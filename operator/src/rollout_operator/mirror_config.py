"""Application-level mirroring: the ConfigMap that tells the stable pods where to copy requests.

GRPCRoute mirroring is an Extended Gateway API feature that many gateways do not implement, and
a replica ratio cannot mirror at all, so shadow traffic does not depend on the mesh: the stable
scheduler pods mount this ConfigMap and forward a sample of their requests to the shadow Service
(``jobshop_scheduler.service.mirror`` reads it; the operator does not import the scheduler, the
format below is the contract). One key, ``mirror.json``::

    {"target": "scheduler-canary:50051", "percent": 10, "timeout_ms": 30000}

plus ``tls_ca_file``/``api_key_file`` (paths inside the stable pods) when given. Off is written
explicitly as ``{"target": null, "percent": 0, "timeout_ms": 30000}`` rather than by deleting the
key, so a pod never mistakes a missing file for a mount it cannot read. The ConfigMap is created
when missing (the Deployment should mount it with ``optional: true``) and never deleted: the
stable pods keep mounting it after the rollout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from rollout_operator.kube import created, none_if_missing
from rollout_operator.model import RoutingSpec
from rollout_operator.resource import MANAGED_BY

MIRROR_KEY = "mirror.json"
# How long a copy waits for the shadow's answer. Long on purpose: cutting a copy off sooner hides
# exactly the slowness the rollback rules look for (a shadow that took 12 s per answer looked
# healthy under a 2 s cut-off: its calls ended CANCELLED, not slow). The stable pods' mirror
# queue is bounded: copies beyond what its workers can wait for are dropped and counted.
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 600_000


def config_map_name(routing: RoutingSpec, target: str) -> str:
    """``spec.routing.mirrorConfigMap``, else ``<targetRef>-mirror``."""
    return routing.mirror_config_map or f"{target}-mirror"


def mirror_target(routing: RoutingSpec) -> str:
    """Where the stable pods send copies: the candidate's Service, resolved in their namespace."""
    return f"{routing.canary_service}:{routing.port}"


def _check_target(target: str) -> None:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"mirror target must be 'host:port' with a port 1-65535, got {target!r}")


def render(
    target: str | None,
    percent: int,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    tls_ca_file: str | None = None,
    api_key_file: str | None = None,
) -> str:
    """The ``mirror.json`` text; ``percent`` 0 or no ``target`` turns mirroring off."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"mirror percent must be an integer from 0 to 100, got {percent!r}")
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise ValueError(f"mirror timeout_ms must be from 1 to {MAX_TIMEOUT_MS}, got {timeout_ms}")
    on = bool(target) and percent > 0
    if on:
        _check_target(str(target))
    data: dict[str, Any] = {
        "target": target if on else None,
        "percent": percent if on else 0,
        "timeout_ms": timeout_ms,
    }
    if tls_ca_file:
        data["tls_ca_file"] = tls_ca_file
    if api_key_file:
        data["api_key_file"] = api_key_file
    return json.dumps(data)


def set_mirror(
    core_api: client.CoreV1Api,
    namespace: str,
    name: str,
    target: str | None,
    percent: int,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    tls_ca_file: str | None = None,
    api_key_file: str | None = None,
) -> None:
    """Write ``mirror.json`` into ConfigMap ``name`` (created when missing; other keys kept)."""
    text = render(
        target,
        percent,
        timeout_ms=timeout_ms,
        tls_ca_file=tls_ca_file,
        api_key_file=api_key_file,
    )
    current = none_if_missing(lambda: core_api.read_namespaced_config_map(name, namespace))
    if current is None:
        body = {"metadata": {"name": name, "labels": MANAGED_BY}, "data": {MIRROR_KEY: text}}
        configmap = client.V1ConfigMap.model_validate(body)
        if created(lambda: core_api.create_namespaced_config_map(namespace, configmap)):
            return
        # created meanwhile: patch it below
    elif (current.data or {}).get(MIRROR_KEY) == text:
        return
    core_api.patch_namespaced_config_map(name, namespace, {"data": {MIRROR_KEY: text}})


def get_mirror(core_api: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any] | None:
    """The parsed ``mirror.json``; None when the ConfigMap or the key is missing."""
    current = none_if_missing(lambda: core_api.read_namespaced_config_map(name, namespace))
    if current is None:
        return None
    text = (current.data or {}).get(MIRROR_KEY)
    if not text:
        return None
    data: dict[str, Any] = json.loads(text)
    return data


@dataclass(frozen=True)
class AppMirror:
    """The mirror switch of one rollout: routers turn it on and off and read it back."""

    core_api: client.CoreV1Api
    namespace: str
    name: str  # the ConfigMap
    target: str  # "host:port" of the candidate's Service

    @classmethod
    def for_routing(
        cls, core_api: client.CoreV1Api, namespace: str, routing: RoutingSpec, target: str
    ) -> AppMirror:
        return cls(core_api, namespace, config_map_name(routing, target), mirror_target(routing))

    def set(self, percent: int) -> None:
        set_mirror(self.core_api, self.namespace, self.name, self.target, percent)

    def percent(self) -> int:
        """The percentage mirrored to this rollout's target now (0 when off or elsewhere)."""
        data = get_mirror(self.core_api, self.namespace, self.name)
        if not data or data.get("target") != self.target:
            return 0
        return round(float(data.get("percent") or 0))
