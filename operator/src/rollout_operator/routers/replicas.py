"""Replica ratio, for clusters without a mesh: the stable Service selects both Deployments'
pods, so each pod gets about an equal share and the candidate's share is its share of the pods.

For ``0 < weight < 100`` the stable Deployment keeps its replica count ``n`` and the candidate
gets ``c = max(1, floor(n * weight / (100 - weight) + 0.5))`` so that ``c / (n + c)`` is the
closest ratio to ``weight`` (never 0 pods for a non-zero weight). The ratio is only as fine as
``n`` allows: n = 9 gives exactly 10/25/50 %, n = 3 gives 25/25/50 %. ``weight`` 100 runs the
candidate with ``n`` pods and scales the stable to 0 (``n`` is kept in an annotation on the
stable Deployment and restored by any lower weight and by ``restore``), so a rollback from 100 %
waits for stable pods to start again. ``weight`` 0 runs no candidate pod, except one when
``mirror_percent`` > 0: a shadow needs a pod to receive the copies.

A replica ratio cannot mirror: the copies always come from the stable pods
(``rollout_operator.mirror_config``). ``get_traffic`` reports the weight that was set (kept in
an annotation on the candidate) when the replica counts still match it, otherwise the share the
counts give; and the application-level mirror percentage while a candidate pod runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from rollout_operator.kube import none_if_missing
from rollout_operator.mirror_config import AppMirror
from rollout_operator.resource import GROUP
from rollout_operator.routers.base import Router, RouterError, TrafficState, check_percent
from rollout_operator.routers.context import RouterContext
from rollout_operator.workloads import TARGET_FIELD, candidate_name

STABLE_REPLICAS_ANNOTATION = f"{GROUP}/stable-replicas"
WEIGHT_ANNOTATION = f"{GROUP}/weight"
MIRROR_ANNOTATION = f"{GROUP}/mirror-percent"


def plan_replicas(stable_replicas: int, weight: int, mirror_percent: int) -> tuple[int, int]:
    """(stable, candidate) replica counts for ``weight`` % to the candidate."""
    n = stable_replicas
    base = max(n, 1)  # a stable scaled to 0 by its owner stays at 0; its candidate still runs
    if weight >= 100:
        return 0, base
    if weight <= 0:
        return n, 1 if mirror_percent > 0 else 0
    return n, max(1, math.floor(base * weight / (100 - weight) + 0.5))


class ReplicaRatioRouter(Router):
    """Scales ``<target>`` and ``<target>-candidate``; mirrors through the stable pods."""

    sizes_candidate = True

    def __init__(
        self, apps_api: client.AppsV1Api, namespace: str, target: str, app_mirror: AppMirror
    ) -> None:
        self.apps_api = apps_api
        self.namespace = namespace
        self.target = target
        self.app_mirror = app_mirror

    def set_traffic(self, weight: int, mirror_percent: int) -> None:
        check_percent("weight", weight)
        check_percent("mirror_percent", mirror_percent)
        stable = self._read(self.target, TARGET_FIELD)
        self._read(candidate_name(self.target), "spec.candidate")  # made by ensure_candidate
        n = self._base_replicas(stable)
        s, c = plan_replicas(n, weight, mirror_percent)
        notes = {WEIGHT_ANNOTATION: str(weight), MIRROR_ANNOTATION: str(mirror_percent)}
        scale_stable = (self.target, s, {STABLE_REPLICAS_ANNOTATION: None if s == n else str(n)})
        scale_candidate = (candidate_name(self.target), c, notes)
        # More pods first, fewer pods second: capacity never dips in between.
        first, second = (
            (scale_stable, scale_candidate)
            if s >= (stable.spec.replicas or 0)
            else (scale_candidate, scale_stable)
        )
        self._scale(*first)
        self._scale(*second)
        self.app_mirror.set(mirror_percent)

    def set_promotion_traffic(self, weight: int, mirror_percent: int) -> None:
        """While Promoting, whatever the last step's split: the stable (now with the candidate's
        spec) back at its own replica count, the candidate's pods kept serving. A stable scaled
        to 0 for weight 100 would be "available" at once with no pod; the candidate is removed
        only once the stable's pods are available (``SetTraffic(0, 0)`` at Succeeded)."""
        stable = self._read(self.target, TARGET_FIELD)
        self._scale(self.target, self._base_replicas(stable), {STABLE_REPLICAS_ANNOTATION: None})

    def get_traffic(self) -> TrafficState:
        stable = self._read(self.target, TARGET_FIELD)
        cand = self._read(candidate_name(self.target), "spec.candidate")
        s, c = stable.spec.replicas or 0, cand.spec.replicas or 0
        notes = cand.metadata.annotations or {}
        weight = round(100 * c / (s + c)) if s + c else 0
        if WEIGHT_ANNOTATION in notes:
            w, m = int(notes[WEIGHT_ANNOTATION]), int(notes.get(MIRROR_ANNOTATION, "0"))
            if plan_replicas(self._base_replicas(stable), w, m) == (s, c):
                weight = w
        return TrafficState(weight=weight, mirror_percent=self.app_mirror.percent() if c else 0)

    def restore(self, *, drop_candidate: bool = False) -> None:
        """Stable back to its replica count, no candidate pod, mirror off. Works without a
        candidate (the finalizer may run after it was removed); there is no route to drop the
        candidate from."""
        stable = self._read(self.target, TARGET_FIELD)
        n = self._base_replicas(stable)
        self._scale(self.target, n, {STABLE_REPLICAS_ANNOTATION: None})
        notes = {WEIGHT_ANNOTATION: "0", MIRROR_ANNOTATION: "0"}
        with contextlib.suppress(RouterError):
            self._scale(candidate_name(self.target), 0, notes)
        self.app_mirror.set(0)

    # --- API -----------------------------------------------------------------------------------

    def _base_replicas(self, stable: Any) -> int:
        """The stable's own replica count: the annotation while it is scaled down for 100 %."""
        saved = (stable.metadata.annotations or {}).get(STABLE_REPLICAS_ANNOTATION)
        return int(saved) if saved is not None else int(stable.spec.replicas or 0)

    def _read(self, name: str, field: str) -> Any:
        found = none_if_missing(
            lambda: self.apps_api.read_namespaced_deployment(name, self.namespace)
        )
        if found is None:
            raise self._missing(name, field)
        return found

    def _scale(self, name: str, replicas: int, annotations: Mapping[str, str | None]) -> None:
        body = {"metadata": {"annotations": annotations}, "spec": {"replicas": replicas}}
        patch = self.apps_api.patch_namespaced_deployment
        if none_if_missing(lambda: patch(name, self.namespace, body)) is None:
            raise self._missing(name, "spec.candidate")

    def _missing(self, name: str, field: str) -> RouterError:
        what = f"Deployment {self.namespace}/{name}"
        return RouterError(f"{what} not found", resource=what, field=field)


def make(context: RouterContext) -> ReplicaRatioRouter:
    """The registry builds routers through this (routers/registry.py)."""
    apps = client.AppsV1Api(context.api_client)
    return ReplicaRatioRouter(apps, context.namespace, context.target, context.app_mirror)
