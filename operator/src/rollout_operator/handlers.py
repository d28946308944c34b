"""The kopf handlers: thin, they only hand the rollout to `reconcile.Reconciler`.

A rollout is reconciled on every change of the object (spec, the command annotation) and on a
timer tick, so time-based progress (step ends, analysis intervals) needs no event. Each reconcile
reads the object fresh from the API server: kopf's copy may predate the status this operator just
wrote, and acting on a stale status would repeat a transition. One lock per rollout keeps a timer
tick and a change handler from reconciling the same rollout at once; finished rollouts get no
timer ticks. A finalizer (``rollouts.scheduling.io/restore-routing``, added by kopf for the
delete handler) restores 100 % stable routing before the rollout disappears. kopf itself logs
in with the reconciler's credentials, so ``--kubeconfig`` holds for its watches too.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from rollout_operator.kube import none_if_missing
from rollout_operator.model import TERMINAL_PHASES
from rollout_operator.reconcile import Reconciler, Rollout
from rollout_operator.resource import FINALIZER, GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

DEFAULT_TICK_S = 5.0


class RolloutLocks:
    """One lock per rollout uid."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    def __call__(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks[uid]

    def forget(self, uid: str) -> None:
        """Drop a deleted rollout's lock, so the table does not grow with every rollout ever."""
        with self._guard:
            self._locks.pop(uid, None)


def fresh(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    """The rollout as the API server has it now; None once it is gone."""
    return none_if_missing(
        lambda: cast(
            dict[str, Any],
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name),
        )
    )


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials, taken from the operator's own API client.

    Without a login handler kopf logs in by itself from ``$KUBECONFIG``/``~/.kube/config`` or
    the service account, so ``--kubeconfig`` would reach the reconciler's client but not kopf's
    watches. kopf calls this again after a 401; reading the key runs the client's refresh hook
    (in-cluster service-account tokens rotate)."""
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def in_progress(status: Mapping[str, Any], **_: Any) -> bool:
    """The timer's filter: a finished rollout (Succeeded, RolledBack, Failed, Invalid) has no
    time-based progress; only a command (an update of the object) can restart it."""
    return status.get("phase") not in {phase.value for phase in TERMINAL_PHASES}


def build_registry(reconciler: Reconciler, tick_s: float = DEFAULT_TICK_S) -> kopf.OperatorRegistry:
    """Handlers bound to ``reconciler``, ticking every ``tick_s`` seconds; kopf logs in with
    the reconciler's API client (its kubeconfig)."""
    registry = kopf.OperatorRegistry()
    locks = RolloutLocks()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(reconciler.api_client.configuration)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER  # what `kubectl get -o yaml` shows

    def run(namespace: str, name: str, uid: str) -> None:
        with locks(uid):
            body = fresh(reconciler.custom, namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                return
            reconciler.reconcile(Rollout.of(body))

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    def on_change(namespace: str | None, name: str, uid: str, **_: Any) -> None:
        run(namespace or "", name, uid)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=tick_s, when=in_progress, registry=registry)
    def on_tick(namespace: str | None, name: str, uid: str, **_: Any) -> None:
        run(namespace or "", name, uid)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def on_delete(body: kopf.Body, uid: str, **_: Any) -> None:
        with locks(uid):
            reconciler.finalize(Rollout.of(dict(body)))
        locks.forget(uid)

    return registry


def post_event(body: Any, type_: str, reason: str, message: str) -> None:
    """Kubernetes Events through kopf's poster (batched, rate-limited, never raising)."""
    kopf.event(body, type=type_, reason=reason, message=message)
