"""Leader election on a ``coordination.k8s.io/v1`` Lease, so that an operator Deployment with
more than one replica never reconciles a rollout twice.

kopf's own peering is no election: operators of equal priority all pause, so identical replicas
would all stand still. The scheme here is client-go's:

- a candidate takes the Lease when it has no holder, or when its record has not changed for the
  record's ``leaseDurationSeconds`` *as this process observed it* (its own monotonic clock; the
  clocks of two machines are never compared);
- the holder renews every ``retry_s``; a holder that has not renewed for ``renew_s`` stops
  working (``on_lost``: the operator exits and its pod restarts as a candidate) before anybody
  else may take the Lease, since ``renew_s < lease_s``; it also stops at once when it sees
  another holder;
- every write carries the ``resourceVersion`` it read, so of two candidates racing for a free
  Lease the API server refuses the second (409);
- a holder that stops cleanly releases the Lease, so the next one takes over at once.

Candidates wait before kopf starts, so kopf's liveness endpoint does not exist yet: a standby
``/healthz`` answers on the same port meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout_operator.kube import none_if_missing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_s: int = 15  # how long a silent holder keeps the Lease
    renew_s: float = 10.0  # how long the holder keeps working without a successful renewal
    retry_s: float = 2.0  # between two attempts to take or renew

    def __post_init__(self) -> None:
        if not 0 < self.retry_s < self.renew_s < self.lease_s:
            raise ValueError("leader election needs 0 < retry < renew deadline < lease duration")


def _micro_time(now: dt.datetime) -> str:
    """RFC 3339 with microseconds: the only form a Lease's MicroTime fields accept."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for one Lease; not thread-safe (one thread tries at a time)."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        config: LeaseConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self._seen_version: str | None = None
        self._seen_at = 0.0

    def try_acquire_or_renew(self) -> bool:
        """One attempt: True when this candidate holds the Lease afterwards."""
        cfg = self.config
        lease = self._read()
        if lease is None:
            return self._create()
        spec, version = lease.get("spec") or {}, lease["metadata"]["resourceVersion"]
        now = self.clock()
        if version != self._seen_version:
            self._seen_version, self._seen_at = version, now
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == cfg.identity:
            return self._write(version, self._spec(transitions, spec.get("acquireTime")))
        expired = now - self._seen_at >= int(spec.get("leaseDurationSeconds") or cfg.lease_s)
        if holder and not expired:
            return False
        return self._write(version, self._spec(transitions + 1, None))

    def holder(self) -> str:
        """Who holds the Lease now ("" for nobody)."""
        lease = self._read()
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this candidate leads (True) or ``stop`` is set (False)."""
        announced = ""
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    log.info("leading: holding Lease %s/%s as %s", self.config.namespace,
                             self.config.name, self.config.identity)  # fmt: skip
                    return True
                holder = self.holder()
                if holder != announced:
                    log.info("standing by: Lease %s/%s is held by %s", self.config.namespace,
                             self.config.name, holder)  # fmt: skip
                    announced = holder
            except Exception as exc:  # API errors, refused connections (urllib3): try again
                log.warning("leader election: %s", exc)
            stop.wait(self.config.retry_s)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew on a daemon thread until ``stop``; ``on_lost`` once leadership cannot be kept."""
        thread = threading.Thread(
            target=self._renew_loop, args=(stop, on_lost), name="lease-renewal", daemon=True
        )
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up (when still ours), so a standby takes over without waiting."""
        cfg = self.config
        with contextlib.suppress(Exception):  # best effort: the Lease expires by itself anyway
            lease = self._read()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == cfg.identity:
                gone = {"holderIdentity": None, "leaseDurationSeconds": 1}
                self._write(lease["metadata"]["resourceVersion"], gone)
                log.info("released Lease %s/%s", cfg.namespace, cfg.name)

    # --- internals ------------------------------------------------------------------------------

    def _renew_loop(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        last_ok = self.clock()
        while not stop.wait(self.config.retry_s):
            try:
                if self.try_acquire_or_renew():
                    last_ok = self.clock()
                    continue
                if self.holder() not in ("", self.config.identity):
                    log.error("leadership lost: the Lease has another holder")
                    on_lost()
                    return
            except Exception as exc:  # any failure is a missed renewal; the deadline decides
                log.warning("lease renewal failed: %s", exc)
            if self.clock() - last_ok >= self.config.renew_s:
                log.error("leadership lost: no renewal for %.0f s", self.config.renew_s)
                on_lost()
                return

    def _spec(self, transitions: int, acquired_at: str | None) -> dict[str, Any]:
        """The Lease spec of this holder; ``acquired_at`` None starts a new term."""
        now = _micro_time(dt.datetime.now(dt.UTC))
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": self.config.lease_s,
            "acquireTime": acquired_at or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _read(self) -> dict[str, Any] | None:
        cfg = self.config
        lease = none_if_missing(lambda: self.api.read_namespaced_lease(cfg.name, cfg.namespace))
        if lease is None:
            return None
        data: dict[str, Any] = self.api.api_client.sanitize_for_serialization(lease)
        return data

    def _create(self) -> bool:
        """Create the Lease held by this candidate; False when somebody created it first."""
        cfg = self.config
        body = {
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": cfg.lease_s,
                     "leaseTransitions": 0},
        }  # fmt: skip
        try:
            made = self.api.create_namespaced_lease(
                cfg.namespace, client.V1Lease.model_validate(body)
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        version = made.metadata.resource_version if made.metadata else None
        return self._write(str(version), self._spec(0, None))  # the times, in MicroTime form

    def _write(self, version: str, spec: dict[str, Any]) -> bool:
        """Merge-patch ``spec`` at the ``resourceVersion`` read (a precondition: the API server
        answers 409 when the Lease changed meanwhile); False when somebody else was faster.

        A patch, not a replace: the Python client would write the times through
        ``datetime.isoformat``, which drops a zero fraction that MicroTime requires."""
        cfg = self.config
        patch = {"metadata": {"resourceVersion": version}, "spec": spec}
        try:
            written = self.api.patch_namespaced_lease(cfg.name, cfg.namespace, patch)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        if written.metadata is not None:
            self._seen_version, self._seen_at = written.metadata.resource_version, self.clock()
        return bool(spec.get("holderIdentity") == cfg.identity)


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.rstrip("/") == "/healthz"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby\n" if ok else b"not found\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not worth a log line."""


@contextlib.contextmanager
def standby_health(port: int) -> Iterator[None]:
    """``/healthz`` on ``port`` (0: none) until the block ends and kopf takes the port over."""
    if not port:
        yield
        return
    server = ThreadingHTTPServer(("0.0.0.0", port), _Healthz)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
