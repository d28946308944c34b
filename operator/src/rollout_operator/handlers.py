"""The kopf handlers: thin, they only hand the rollout to `reconcile.Reconciler`.

A rollout is reconciled on every change of the object (spec, the command annotation) and when
its next reconcile is due, so time-based progress (step ends, analysis rounds) needs no event:
one asyncio task per unfinished rollout (a kopf daemon) sleeps until the moment the last
reconcile named (`plan.next_reconcile_at`: the step's end, the next round, a deadline, at most a
poll later while the rollout waits on the cluster, at most a resync later otherwise), then runs
the reconcile in kopf's thread pool (`wakeups.py`). A step thus ends on its timer, not at the
next tick, and a rollout with nothing due costs no thread and no API request; when threads are
short, a step's end goes before routine reconciles (`wakeups.Gate`). Each reconcile reads the
object fresh from the API server: kopf's copy may predate the status this operator just wrote,
and acting on a stale status would repeat a transition; the one exception is a timed reconcile
when kopf's copy is the very version the rollout's last reconcile left. One lock per rollout
keeps the task and a change handler from reconciling the same rollout at once; finished
rollouts have no task. A finalizer (``rollouts.scheduling.io/restore-routing``, added by kopf
for the delete handler) restores 100 % stable routing before the rollout disappears. kopf
itself logs in with the reconciler's credentials, so ``--kubeconfig`` holds for its watches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from rollout_operator.kube import none_if_missing
from rollout_operator.model import TERMINAL_PHASES
from rollout_operator.plan import Wakeup, next_reconcile_at
from rollout_operator.reconcile import Reconciled, Reconciler, Rollout
from rollout_operator.resource import FINALIZER, GROUP, PLURAL, VERSION
from rollout_operator.wakeups import Gate, Wakeups, sleep_until

log = logging.getLogger(__name__)

DEFAULT_TICK_S = 5.0
# A rollout that waits on nothing but its timers is still reconciled this often (or every tick,
# if longer): Deployment and route changes that no event of the rollout announces are seen then.
RESYNC_S = 5.0


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
    """The driving task's filter: a finished rollout (Succeeded, RolledBack, Failed, Invalid)
    has no time-based progress; only a command (an update of the object) can restart it."""
    return status.get("phase") not in {phase.value for phase in TERMINAL_PHASES}


class Driver:
    """Runs the reconciles of every rollout: on a change of the object (`run`, in a kopf pool
    thread) and when the next one is due (`drive`, one asyncio task per unfinished rollout).

    A rollout that waits on the cluster is polled every ``tick_s`` seconds; any other is
    reconciled when its next time-based change is due, and at least every ``resync_s``."""

    def __init__(self, reconciler: Reconciler, tick_s: float, workers: int = 16) -> None:
        self.reconciler = reconciler
        self.tick_s = tick_s
        self.resync_s = max(tick_s, RESYNC_S)
        self.locks = RolloutLocks()
        self.wakeups = Wakeups(max_sleep_s=self.resync_s)
        self.threads: concurrent.futures.Executor | None = None  # kopf's: --workers bounds all
        self.gate = Gate(workers)  # as many slots as threads; kopf's count at startup
        self._versions: dict[str, str] = {}  # uid -> resourceVersion the last reconcile left

    def next_at(self, done: Reconciled) -> Wakeup | None:
        """When the rollout a reconcile left as ``done`` is due again; None: nothing is due."""
        if done.spec is None:  # finished, or a spec that does not parse
            return None
        return next_reconcile_at(
            done.spec, done.status, done.now, poll_s=self.tick_s, resync_s=self.resync_s,
            progress_deadline_s=self.reconciler.progress_deadline_s,
        )  # fmt: skip

    def left_by_last(self, uid: str, known: Mapping[str, Any] | None) -> bool:
        """Whether ``known`` is the very version of the object the last reconcile left."""
        version = None if known is None else (known.get("metadata") or {}).get("resourceVersion")
        return version is not None and version == self._versions.get(uid)

    def current(self, uid: str, known: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A copy of ``known`` (kopf's latest copy of the object) if it is the version the last
        reconcile left, which saves reading it back; None otherwise. Never older than what this
        operator wrote: an older copy has another version, and is read afresh instead. Called
        on kopf's event loop, where kopf swaps in a new copy per event and never edits one, so
        the top level taken here is all of one version; the reconcile only reads it."""
        return dict(known) if known and self.left_by_last(uid, known) else None

    def run(self, namespace: str, name: str, uid: str, known: dict[str, Any] | None = None) -> None:
        """One reconcile of the rollout as the API server has it now (``known``: a copy from
        `current`, used if still the version the last reconcile left); sets the next moment."""
        with self.locks(uid):
            if not self.left_by_last(uid, known):  # a change handler reconciled meanwhile
                known = None
            body = known or fresh(self.reconciler.custom, namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                self.wakeups.set(uid, None)
                return
            try:
                done = self.reconciler.reconcile(Rollout.of(body))
            except Exception:
                self._versions.pop(uid, None)
                self.wakeups.set(uid, Wakeup(time.time() + self.tick_s))  # transient: a poll on
                raise
            if done.version is None:
                self._versions.pop(uid, None)
            else:
                self._versions[uid] = done.version
            self.wakeups.set(uid, self.next_at(done))

    async def drive(
        self,
        stopped: kopf.DaemonStopped,
        namespace: str,
        name: str,
        uid: str,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """Reconcile the rollout each time its next reconcile is due, until kopf stops the task
        (the rollout finished or is being deleted, or the operator exits). A uid with no moment
        yet (a new rollout, a restarted operator) is reconciled at once. ``body`` is kopf's
        live copy of the object (kept current by its watch)."""
        loop = asyncio.get_running_loop()
        try:
            with self.wakeups.waiter(uid) as woken:
                while not stopped:
                    woken.clear()  # before reading the moment: a later set() wakes us again
                    delay = self.wakeups.due_in(uid)
                    if delay > 0:
                        await sleep_until(delay, woken.wait(), stopped.wait())
                        continue
                    wakeup = self.wakeups.get(uid) or Wakeup(time.time())
                    known = self.current(uid, body)
                    # In kopf's context (kopf.event needs it), as kopf runs its sync handlers.
                    context = contextvars.copy_context()
                    call = functools.partial(context.run, self.run, namespace, name, uid, known)
                    try:
                        async with self.gate.slot(wakeup):
                            await _unless_cancelled(loop.run_in_executor(self.threads, call))
                    except Exception:
                        log.exception("reconcile of %s/%s failed; again in %.1f s",
                                      namespace, name, self.tick_s)  # fmt: skip
        finally:
            self.wakeups.forget(uid)  # restarted by a retry: at once, like a new rollout
            self._versions.pop(uid, None)

    def delete(self, body: kopf.Body, uid: str) -> None:
        """The finalizer: restore the routing, then forget the rollout."""
        with self.locks(uid):
            self.reconciler.finalize(Rollout.of(dict(body)))
        self.locks.forget(uid)
        self.wakeups.forget(uid)
        self._versions.pop(uid, None)


async def _unless_cancelled(future: asyncio.Future[None]) -> None:
    """Await a reconcile running in a thread; a cancellation waits for the thread to finish
    first (as kopf does for its own sync handlers), so no reconcile outlives its task."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    future.result()


def build_registry(reconciler: Reconciler, tick_s: float = DEFAULT_TICK_S) -> kopf.OperatorRegistry:
    """Handlers bound to ``reconciler`` (see `Driver` for ``tick_s``); kopf logs in with the
    reconciler's API client (its kubeconfig)."""
    registry = kopf.OperatorRegistry()
    driver = Driver(reconciler, tick_s)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(reconciler.api_client.configuration)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER  # what `kubectl get -o yaml` shows
        driver.threads = settings.execution.executor
        driver.gate.slots = settings.execution.max_workers or driver.gate.slots

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    def on_change(namespace: str | None, name: str, uid: str, **_: Any) -> None:
        driver.run(namespace or "", name, uid)

    @kopf.daemon(GROUP, VERSION, PLURAL, when=in_progress, registry=registry)
    async def on_due(
        stopped: kopf.DaemonStopped,
        namespace: str | None,
        name: str,
        uid: str,
        body: kopf.Body,
        **_: Any,
    ) -> None:
        await driver.drive(stopped, namespace or "", name, uid, body)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def on_delete(body: kopf.Body, uid: str, **_: Any) -> None:
        driver.delete(body, uid)

    return registry


def post_event(body: Any, type_: str, reason: str, message: str) -> None:
    """Kubernetes Events through kopf's poster (batched, rate-limited, never raising)."""
    kopf.event(body, type=type_, reason=reason, message=message)
