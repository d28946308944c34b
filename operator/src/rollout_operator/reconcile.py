"""One reconcile of one rollout: gather inputs, ask the state machine, act, write status once.

The kopf handlers (`handlers.py`) call `Reconciler.reconcile` on every timer tick and on every
change of the object; everything that decides lives in `state_machine.advance`. The order is the
one `actions.py` explains: effects (idempotent) first, then one status write, then events and
webhook notifications (`notify.py`), so a crash at any point leaves a state the next reconcile
repairs, never a half-written status or an announcement of a change that did not happen.

Errors: a spec or a cluster object that cannot work as written (`SpecError`, and the routers' and
workloads' errors that name a spec field) puts the rollout in phase Invalid with the field named;
the operator keeps running. Anything else is transient: it propagates, and kopf retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kubernetes import client

from rollout_operator import commands, notify, services, workloads
from rollout_operator.actions import (
    Action,
    EmitEvent,
    EnsureCandidate,
    Notify,
    PromoteStable,
    RemoveCandidate,
    ScaleDownCandidate,
    SetTraffic,
    split,
)
from rollout_operator.analysis.runner import analyse
from rollout_operator.metrics import OperatorMetrics
from rollout_operator.model import TERMINAL_PHASES, Commands, Phase, RolloutSpec
from rollout_operator.resource import GROUP, KIND, PLURAL, VERSION
from rollout_operator.routers.base import Router, RouterError
from rollout_operator.routers.registry import make_router
from rollout_operator.services import ServiceError
from rollout_operator.spec import SpecError, parse_spec
from rollout_operator.state_machine import (
    RETRYABLE_PHASES,
    advance,
    analysis_due,
    invalid_status,
    track_at,
)
from rollout_operator.status import RolloutStatus
from rollout_operator.workloads import WorkloadError

log = logging.getLogger(__name__)

FIELD_ERRORS = (RouterError, WorkloadError, ServiceError)


def _is_retry(pending: str | None) -> bool:
    try:
        return pending is not None and commands.decode(pending) == "retry"
    except commands.CommandError:
        return False


def rollback_cause(status: RolloutStatus) -> str:
    """The metric label of a rollback: the rule that breached, else the condition's reason."""
    condition = status.condition("RolledBack")
    if condition is None:
        return "unknown"
    if condition.reason == "ThresholdBreached" and status.rollback_reason:
        return status.rollback_reason.split()[0]
    return condition.reason


class EventSink(Protocol):
    def __call__(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Rollout:
    """The parts of the object a reconcile reads."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    body: Mapping[str, Any]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Rollout:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            generation=meta.get("generation"),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            annotations=meta.get("annotations") or {},
            body=body,
        )

    @property
    def owner_ref(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }


class Reconciler:
    """Holds the clients; one instance serves every rollout of the operator process."""

    def __init__(
        self,
        api_client: client.ApiClient,
        metrics: OperatorMetrics,
        emit: EventSink,
        *,
        progress_deadline_s: float | None = None,
    ) -> None:
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.metrics = metrics
        self.emit = emit
        self.deadline_kw = (
            {} if progress_deadline_s is None else {"progress_deadline_s": progress_deadline_s}
        )

    # --- the loop ---------------------------------------------------------------------------

    def reconcile(self, rollout: Rollout) -> None:
        """Bring one rollout one step forward."""
        now = time.time()
        status = RolloutStatus.from_dict(rollout.status)
        pending = commands.pending(rollout.annotations, rollout.status)
        if status.phase in TERMINAL_PHASES and not (
            _is_retry(pending) and status.phase in RETRYABLE_PHASES
        ):
            self._finished(rollout, status, pending)
            return
        try:
            spec = parse_spec(rollout.spec)
            wanted = commands.to_commands(pending)
        except (SpecError, commands.CommandError) as exc:
            self._invalid(rollout, status, exc, now, pending)
            return
        try:
            router = self._router(spec, rollout)
            new, actions = self._advance(spec, rollout, status, now, wanted, router=router)
            new = self._apply(spec, rollout, router, new, actions)
        except FIELD_ERRORS as exc:
            self._invalid(rollout, status, SpecError(exc.field, str(exc)), now, pending)
            return
        new = replace(
            new,
            last_command=pending or new.last_command,
            observed_generation=rollout.generation,
        )
        self._write(rollout, status, new, actions, webhook_url=spec.webhook_url)

    def finalize(self, rollout: Rollout) -> None:
        """The rollout is being deleted: all traffic to stable, no mirror, no candidate."""
        try:
            spec = parse_spec(rollout.spec)
        except SpecError:
            log.warning("deleting %s/%s with an invalid spec: nothing to restore",
                        rollout.namespace, rollout.name)  # fmt: skip
            return
        try:
            self._router(spec, rollout).restore()
        except RouterError as exc:
            log.warning("routing of %s/%s not restored: %s", rollout.namespace, rollout.name, exc)
        workloads.remove_candidate(self.apps, rollout.namespace, spec.target)
        self.metrics.forget(rollout.name, rollout.namespace)

    # --- steps --------------------------------------------------------------------------------

    def _router(self, spec: RolloutSpec, rollout: Rollout) -> Router:
        return make_router(
            spec.routing,
            rollout.namespace,
            self.api_client,
            target=spec.target,
            route_mirror=spec.routing.mirror == "route",
        )

    def _advance(
        self,
        spec: RolloutSpec,
        rollout: Rollout,
        status: RolloutStatus,
        now: float,
        wanted: Commands,
        *,
        router: Router,
    ) -> tuple[RolloutStatus, list[Action]]:
        report = None
        if analysis_due(spec, status, now):
            report = analyse(
                spec.analysis,
                track=track_at(spec.steps, status.step),
                namespace=rollout.namespace,
                rollout=rollout.name,
                shadow=status.phase is Phase.SHADOW,
                now=now,
            )
            self.metrics.record_analysis(rollout.name, rollout.namespace, report)
        ns, target = rollout.namespace, spec.target
        return advance(
            spec,
            status,
            now,
            report,
            wanted,
            candidate_available=workloads.candidate_available(self.apps, ns, target),
            stable_available=workloads.stable_available(self.apps, ns, target),
            router_sizes_candidate=router.sizes_candidate,
            route=router.acceptance(),
            **self.deadline_kw,
        )

    def _apply(
        self,
        spec: RolloutSpec,
        rollout: Rollout,
        router: Router,
        status: RolloutStatus,
        actions: list[Action],
    ) -> RolloutStatus:
        """Carry out the effects (idempotent); the revisions they report go into the status."""
        ns, target = rollout.namespace, spec.target
        effects, _ = split(actions)
        for effect in effects:
            if isinstance(effect, EnsureCandidate):
                services.ensure_canary_service(
                    self.core, ns, spec.routing, target, rollout.owner_ref
                )
                hide = services.service_selector(self.core, ns, spec.routing.stable_service)
                replicas = self._candidate_replicas(router, ns, target)
                revision = workloads.ensure_candidate(
                    self.apps, ns, target, spec.candidate, effect.track, rollout.name,
                    rollout.owner_ref, hide_from=hide, replicas=replicas,
                )  # fmt: skip
                status = replace(status, candidate_revision=revision)
            elif isinstance(effect, SetTraffic):
                if status.phase is Phase.PROMOTING:
                    router.set_promotion_traffic(effect.weight, effect.mirror_percent)
                else:
                    router.set_traffic(effect.weight, effect.mirror_percent)
            elif isinstance(effect, PromoteStable):
                revision = workloads.promote_stable(self.apps, ns, target)
                status = replace(status, stable_revision=revision)
            elif isinstance(effect, ScaleDownCandidate):
                workloads.scale_down_candidate(self.apps, ns, target)
            elif isinstance(effect, RemoveCandidate):
                workloads.remove_candidate(self.apps, ns, target)
        if not status.stable_revision:
            status = replace(
                status, stable_revision=workloads.stable_revision(self.apps, ns, target)
            )
        return status

    def _candidate_replicas(self, router: Router, namespace: str, target: str) -> int | None:
        """As many pods as stable (mirrored or weighted traffic can reach the full load), unless
        the router sizes the candidate itself (None: keep its count)."""
        if router.sizes_candidate:
            return None
        return max(1, workloads.stable_replicas(self.apps, namespace, target))

    def _finished(self, rollout: Rollout, status: RolloutStatus, pending: str | None) -> None:
        """A finished rollout changes only by ``retry``: nothing is read or checked (a target
        Deployment deleted after a promotion must not turn Succeeded into Invalid); a command
        that does not apply is recorded as handled, so it is not looked at again."""
        new = replace(status, last_command=pending or status.last_command,
                      observed_generation=rollout.generation)  # fmt: skip
        self._write(rollout, status, new, [])

    def _invalid(
        self,
        rollout: Rollout,
        status: RolloutStatus,
        error: SpecError | commands.CommandError,
        now: float,
        pending: str | None,
    ) -> None:
        spec_error = (
            error if isinstance(error, SpecError) else SpecError("metadata.annotations", str(error))
        )
        new, actions = invalid_status(status, spec_error, now)
        new = replace(new, last_command=pending or new.last_command,
                      observed_generation=rollout.generation)  # fmt: skip
        self._write(rollout, status, new, actions)

    def _write(
        self,
        rollout: Rollout,
        old: RolloutStatus,
        new: RolloutStatus,
        actions: list[Action],
        *,
        webhook_url: str = "",
    ) -> None:
        """One status patch (only when changed), then events, webhook and metrics.

        ``webhook_url`` comes from the parsed spec; a spec that does not parse notifies nobody.
        """
        written = new.to_dict()
        if written != old.to_dict():
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, rollout.namespace, PLURAL, rollout.name, {"status": written}
            )
        _, announcements = split(actions)
        for announcement in announcements:
            if isinstance(announcement, EmitEvent):
                self.emit(
                    rollout.body, announcement.type, announcement.reason, announcement.message
                )
            elif isinstance(announcement, Notify) and webhook_url:
                notify.send(
                    webhook_url,
                    announcement,
                    namespace=rollout.namespace,
                    rollout=rollout.name,
                    status=new,
                )
        self.metrics.record_state(rollout.name, rollout.namespace, new.phase, new.weight)
        if new.phase is Phase.ROLLED_BACK and old.phase is not Phase.ROLLED_BACK:
            self.metrics.record_rollback(rollout.name, rollout.namespace, rollback_cause(new))
