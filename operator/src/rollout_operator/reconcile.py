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

from rollout_operator import commands, notify, services, signoffs, verification, workloads
from rollout_operator.actions import (
    Action,
    Effect,
    EmitEvent,
    EnsureCandidate,
    Notify,
    PromoteStable,
    RemoveCandidate,
    RunVerification,
    ScaleDownCandidate,
    SetTraffic,
    split,
)
from rollout_operator.analysis.runner import analyse
from rollout_operator.drain import DEFAULT_DRAIN_S, drain
from rollout_operator.metrics import OperatorMetrics
from rollout_operator.model import (
    TERMINAL_PHASES,
    Commands,
    Phase,
    RolloutSpec,
    VerifyJob,
    VerifyStep,
)
from rollout_operator.resource import GROUP, KIND, PLURAL, VERSION
from rollout_operator.routers.base import Router, RouterError
from rollout_operator.routers.registry import make_router
from rollout_operator.services import ServiceError
from rollout_operator.spec import SpecError, parse_spec
from rollout_operator.state_machine import (
    PROGRESS_DEADLINE_S,
    RETRYABLE_PHASES,
    advance,
    analysed_since,
    analysis_due,
    invalid_status,
    track_at,
)
from rollout_operator.status import RolloutStatus
from rollout_operator.workloads import WorkloadError

log = logging.getLogger(__name__)

FIELD_ERRORS = (RouterError, WorkloadError, ServiceError)
REASSERT_S = 5.0  # steady effects are applied again at least this often (see SteadyEffects)
_STEADY_EFFECTS = (EnsureCandidate, SetTraffic)


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


@dataclass(frozen=True)
class Reconciled:
    """What a reconcile left, for the handlers to schedule the next one: the status as written,
    the spec it followed (None: a spec that does not parse, or a finished rollout, which was
    not looked at), the time it acted at, and the object's ``resourceVersion`` as it left it
    (its status patch's, else the one it read): a copy of the object at that version is the
    object as this reconcile left it."""

    status: RolloutStatus
    spec: RolloutSpec | None
    now: float
    version: str | None = None


class SteadyEffects:
    """The steady effects (the candidate's track, the traffic split) last applied per rollout.

    A reconcile whose effects are all steady and equal those applied for the same spec
    generation less than ``reassert_s`` ago does not apply them again: they hold, unless someone
    changed the objects since, which the next re-assertion repairs. This keeps an analysis round
    (every second, at scale) from re-reading the Services, the ConfigMap and the candidate's
    template each time; drift is still repaired within ``reassert_s``, as the default 5 s
    tick did. Anything else is applied at once: a transition's effects, a changed split or
    track, a spec edit, the first reconcile after a restart. Thread-safe per rollout (one
    reconcile of a rollout at a time)."""

    def __init__(self, reassert_s: float = REASSERT_S) -> None:
        self.reassert_s = reassert_s
        self._applied: dict[str, tuple[int | None, tuple[Effect, ...], float]] = {}

    def in_force(self, uid: str, generation: int | None, effects: list[Effect], now: float) -> bool:
        """Whether ``effects`` may be skipped (see the class)."""
        applied = self._applied.get(uid)
        return (
            applied is not None
            and applied[:2] == (generation, tuple(effects))
            and now - applied[2] < self.reassert_s
        )

    def applied(self, uid: str, generation: int | None, effects: list[Effect], now: float) -> None:
        """``effects`` all went through at ``now``; only steady ones are remembered."""
        if effects and all(isinstance(effect, _STEADY_EFFECTS) for effect in effects):
            self._applied[uid] = (generation, tuple(effects), now)
        else:
            self.forget(uid)

    def forget(self, uid: str) -> None:
        """Apply the next effects whatever they are (called before applying: a failure midway
        leaves nothing remembered)."""
        self._applied.pop(uid, None)


class Reconciler:
    """Holds the clients; one instance serves every rollout of the operator process."""

    def __init__(
        self,
        api_client: client.ApiClient,
        metrics: OperatorMetrics,
        emit: EventSink,
        *,
        progress_deadline_s: float | None = None,
        drain_s: float = DEFAULT_DRAIN_S,
    ) -> None:
        self.api_client = api_client
        self.drain_s = drain_s
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.metrics = metrics
        self.emit = emit
        self.progress_deadline_s = (
            PROGRESS_DEADLINE_S if progress_deadline_s is None else progress_deadline_s
        )
        self.steady = SteadyEffects()

    # --- the loop ---------------------------------------------------------------------------

    def reconcile(self, rollout: Rollout) -> Reconciled:
        """Bring one rollout one step forward; what it left."""
        now = time.time()
        status = RolloutStatus.from_dict(rollout.status)
        pending = commands.pending(rollout.annotations, rollout.status)
        if status.phase in TERMINAL_PHASES and not (
            _is_retry(pending) and status.phase in RETRYABLE_PHASES
        ):
            return self._finished(rollout, status, pending, now)
        try:
            spec = parse_spec(rollout.spec)
            signed = signoffs.parse(rollout.annotations)
            wanted = replace(
                commands.to_commands(pending),
                sign_offs={role: (s.user, s.value) for role, s in signed.items()},
            )
        except (SpecError, commands.CommandError) as exc:
            return self._invalid(rollout, status, exc, now, pending)
        # Each Deployment is read once in this reconcile (a write reads it afresh).
        apps = workloads.ReadOnceAppsApi(self.api_client)
        try:
            router = self._router(spec, rollout)
            new, actions = self._advance(
                spec, rollout, status, now, wanted, apps=apps, router=router
            )
            effects, _ = split(actions)
            if not self.steady.in_force(rollout.uid, rollout.generation, effects, now):
                self.steady.forget(rollout.uid)
                new = self._apply(spec, rollout, router, new, actions, apps=apps, now=now)
                self.steady.applied(rollout.uid, rollout.generation, effects, now)
        except FIELD_ERRORS as exc:
            error = SpecError(exc.field, str(exc))
            return self._invalid(rollout, status, error, now, pending)
        new = replace(
            new,
            last_command=pending or new.last_command,
            observed_generation=rollout.generation,
        )
        version = self._write(rollout, status, new, actions, webhook_url=spec.webhook_url)
        return Reconciled(new, spec, now, version)

    def finalize(self, rollout: Rollout) -> None:
        """The rollout is being deleted: all traffic to stable, no mirror, no candidate."""
        try:
            spec = parse_spec(rollout.spec)
        except SpecError:
            log.warning("deleting %s/%s with an invalid spec: nothing to restore",
                        rollout.namespace, rollout.name)  # fmt: skip
            return
        router = self._router(spec, rollout)
        try:
            # the operator's canary Service goes with the rollout: the route stops naming it
            made = services.made_by_operator(self.core, rollout.namespace, spec.routing)
            router.restore(drop_candidate=made)
        except RouterError as exc:
            log.warning("routing of %s/%s not restored: %s", rollout.namespace, rollout.name, exc)
        else:
            self._drain(router, rollout)
        workloads.remove_candidate(self.apps, rollout.namespace, spec.target)
        self.metrics.forget(rollout.name, rollout.namespace)
        self.steady.forget(rollout.uid)

    def _drain(self, router: Router, rollout: Rollout) -> None:
        """Before the candidate's pods go: the gateway routes nothing to them (see drain)."""
        if not router.sizes_candidate:  # a replica ratio has no gateway to wait for
            drain(
                router.acceptance, self.drain_s, what=f"route of {rollout.namespace}/{rollout.name}"
            )

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
        apps: client.AppsV1Api,
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
                shadow_since=status.step_started_at,
                since=status.analysed_since,
            )
            self.metrics.record_analysis(rollout.name, rollout.namespace, report)
        ns, target = rollout.namespace, spec.target
        return advance(
            spec,
            status,
            now,
            report,
            wanted,
            candidate_available=workloads.candidate_available(apps, ns, target),
            stable_available=workloads.stable_available(apps, ns, target),
            router_sizes_candidate=router.sizes_candidate,
            route=router.acceptance(),
            progress_deadline_s=self.progress_deadline_s,
            verify_job=self._verify_job(rollout, status),
        )

    def _verify_job(self, rollout: Rollout, status: RolloutStatus) -> VerifyJob | None:
        """The verification Job as the cluster shows it, while the rollout verifies."""
        found = status.verification
        if status.phase is not Phase.VERIFYING or found is None:
            return None
        return verification.observe(self.batch, self.core, rollout.namespace, found.job)

    def _apply(
        self,
        spec: RolloutSpec,
        rollout: Rollout,
        router: Router,
        status: RolloutStatus,
        actions: list[Action],
        *,
        apps: client.AppsV1Api,
        now: float,
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
                replicas = self._candidate_replicas(router, apps, ns, target)
                revision = workloads.ensure_candidate(
                    apps, ns, target, spec.candidate, effect.track, rollout.name,
                    rollout.owner_ref, hide_from=hide, replicas=replicas,
                )  # fmt: skip
                since = analysed_since(status, revision, now)
                status = replace(status, candidate_revision=revision, analysed_since=since)
            elif isinstance(effect, SetTraffic):
                if status.phase is Phase.PROMOTING:
                    router.set_promotion_traffic(effect.weight, effect.mirror_percent)
                else:
                    router.set_traffic(effect.weight, effect.mirror_percent)
            elif isinstance(effect, RunVerification):
                status = self._run_verification(spec, rollout, status, effect, apps=apps)
            elif isinstance(effect, PromoteStable):
                revision = workloads.promote_stable(apps, ns, target)
                status = replace(status, stable_revision=revision)
            elif isinstance(effect, ScaleDownCandidate):
                verification.stop_active(self.batch, ns, rollout.name)
                self._drain(router, rollout)
                workloads.scale_down_candidate(apps, ns, target)
            elif isinstance(effect, RemoveCandidate):
                verification.stop_active(self.batch, ns, rollout.name)
                self._drain(router, rollout)
                workloads.remove_candidate(apps, ns, target)
        if not status.stable_revision:
            status = replace(status, stable_revision=workloads.stable_revision(apps, ns, target))
        return status

    def _run_verification(
        self,
        spec: RolloutSpec,
        rollout: Rollout,
        status: RolloutStatus,
        effect: RunVerification,
        *,
        apps: client.AppsV1Api,
    ) -> RolloutStatus:
        """Create the verify step's Job from the candidate as it is now; the status records it
        (an absent Job the status says was created was deleted: the state machine ends it)."""
        step = spec.steps[effect.step]
        found = status.verification
        if not isinstance(step, VerifyStep) or found is None or found.job != effect.job:
            return status
        candidate = workloads.read_candidate(apps, rollout.namespace, spec.target)
        job = verification.build_job(
            candidate, step, spec.routing, namespace=rollout.namespace, rollout=rollout.name,
            name=effect.job, owner_ref=rollout.owner_ref,
        )  # fmt: skip
        verification.create_job(self.batch, job)
        return replace(status, verification=replace(found, created=True, state="Waiting"))

    def _candidate_replicas(
        self, router: Router, apps: client.AppsV1Api, namespace: str, target: str
    ) -> int | None:
        """As many pods as stable (mirrored or weighted traffic can reach the full load), unless
        the router sizes the candidate itself (None: keep its count)."""
        if router.sizes_candidate:
            return None
        return max(1, workloads.stable_replicas(apps, namespace, target))

    def _finished(
        self, rollout: Rollout, status: RolloutStatus, pending: str | None, now: float
    ) -> Reconciled:
        """A finished rollout changes only by ``retry``: nothing is read or checked (a target
        Deployment deleted after a promotion must not turn Succeeded into Invalid); a command
        that does not apply is recorded as handled, so it is not looked at again."""
        new = replace(status, last_command=pending or status.last_command,
                      observed_generation=rollout.generation)  # fmt: skip
        return Reconciled(new, None, now, self._write(rollout, status, new, []))

    def _invalid(
        self,
        rollout: Rollout,
        status: RolloutStatus,
        error: SpecError | commands.CommandError,
        now: float,
        pending: str | None,
    ) -> Reconciled:
        self.steady.forget(rollout.uid)
        spec_error = (
            error if isinstance(error, SpecError) else SpecError("metadata.annotations", str(error))
        )
        new, actions = invalid_status(status, spec_error, now)
        new = replace(new, last_command=pending or new.last_command,
                      observed_generation=rollout.generation)  # fmt: skip
        return Reconciled(new, None, now, self._write(rollout, status, new, actions))

    def _write(
        self,
        rollout: Rollout,
        old: RolloutStatus,
        new: RolloutStatus,
        actions: list[Action],
        *,
        webhook_url: str = "",
    ) -> str | None:
        """One status patch (only when changed), then events, webhook and metrics; the object's
        ``resourceVersion`` after it (the patch's, else the one read).

        ``webhook_url`` comes from the parsed spec; a spec that does not parse notifies nobody.
        """
        version = _resource_version(rollout.body)
        written = new.to_dict()
        if written != old.to_dict():
            patched = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, rollout.namespace, PLURAL, rollout.name, {"status": written}
            )
            version = _resource_version(patched)
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
        return version


def _resource_version(body: object) -> str | None:
    """``metadata.resourceVersion`` of an object as the API returned it; None if it has none."""
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return version if isinstance(version, str) else None
