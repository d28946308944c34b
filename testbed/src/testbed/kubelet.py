"""Scheduler pods without a kubelet: Deployments in the watched namespaces run as real processes.

The control plane here has no kubelet, no Deployment controller and no endpoints controller.
``SchedulerKubelet`` plays all three for scheduler Deployments, closely enough that the operator
cannot tell the difference:

- every Deployment with replicas > 0 runs one real ``schedctl serve`` process (one stands for
  all replicas) started with its main container's env (``SCHEDULER_TRACK``,
  ``SCHEDULER_DEFAULT_POLICY``, ``SCHEDULER_ENABLE_FAULTS``, ...);
- a changed pod template starts a new process and retires the old one only once the new one is
  SERVING, like a rolling update with surge; the Deployment's status reports the replicas
  available only then, so ``kubectl rollout status`` (and the operator) wait for real readiness;
- a retired process keeps serving for ``termination_delay`` seconds (a preStop sleep) so that a
  gateway still routing to it finishes its switch first;
- a Service's endpoints are the SERVING processes whose pod labels match its selector; while
  none of them is ready, the terminating ones that still serve (as kube-proxy does);
- ``on_targets(namespace, addresses)`` reports each namespace's /metrics addresses whenever
  they change, for Prometheus to scrape with a ``namespace`` label.

Each process gets a faults file (``faults_file(namespace, deployment)``) that a drill writes; the
server honours it only when the pod's env has ``SCHEDULER_ENABLE_FAULTS=1``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from jobshop_scheduler.bench.servers import ServerProcess
from jobshop_scheduler.service import client as grpc_client
from rollout_operator.workloads import main_container, template_revision

log = logging.getLogger(__name__)

Obj = dict[str, Any]
TargetsCallback = Callable[[str, list[str]], None]
LOOP_S = 0.2


@dataclass(frozen=True)
class Endpoint:
    address: str  # host:port of the gRPC server
    track: str  # the pod's SCHEDULER_TRACK, the label its metrics carry
    pod: str


@dataclass
class Pod:
    name: str
    namespace: str
    deployment: str
    revision: str
    labels: dict[str, str]
    server: ServerProcess
    ready: bool = False
    retiring_since: float | None = None

    @property
    def track(self) -> str:
        return self.server.track


@dataclass
class _DeploymentState:
    pods: list[Pod] = field(default_factory=list)


def container_env(template: Obj) -> dict[str, str]:
    """The literal ``value`` env of the template's main container (``valueFrom`` is ignored)."""
    env = main_container(template).get("env") or []
    return {e["name"]: str(e["value"]) for e in env if "value" in e}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


class SchedulerKubelet:
    """See the module docstring. ``namespaces`` may grow while it runs."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        *,
        keys_file: Path,
        model_dir: Path,
        on_targets: TargetsCallback | None = None,
        termination_delay: float = 1.0,
    ) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.workdir = workdir
        self.keys_file = keys_file
        self.model_dir = model_dir
        self.on_targets = on_targets
        self.termination_delay = termination_delay
        self.namespaces: set[str] = set()
        self._state: dict[tuple[str, str], _DeploymentState] = {}
        self._endpoints: dict[tuple[str, str], list[Endpoint]] = {}
        self._targets: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._names = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self.pod_starts = 0

    # --- what the rest of the harness reads ---------------------------------------------------

    def endpoints(self, namespace: str, service: str) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints.get((namespace, service), []))

    def pods(self, namespace: str) -> list[Pod]:
        with self._lock:
            return [p for (ns, _), s in self._state.items() if ns == namespace for p in s.pods]

    def faults_file(self, namespace: str, deployment: str) -> Path:
        return self.workdir / namespace / f"{deployment}.faults.json"

    def set_faults(self, namespace: str, deployment: str, **faults: float) -> None:
        """Write the Deployment's faults file (the server watches it); no arguments clears it."""
        path = self.faults_file(namespace, deployment)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.replace(path)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SchedulerKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            pods = [p for s in self._state.values() for p in s.pods]
            self._state.clear()
        _stop_all(pods)

    def forget(self, namespace: str) -> None:
        """Stop the namespace's processes and stop watching it."""
        self.namespaces.discard(namespace)
        with self._lock:
            keys = [k for k in self._state if k[0] == namespace]
            pods = [p for k in keys for p in self._state.pop(k).pods]
        _stop_all(pods)

    def _run(self) -> None:
        while not self._stop.wait(LOOP_S):
            for namespace in list(self.namespaces):
                try:
                    self._sync(namespace)
                except ApiException as exc:  # the API server restarting: next round
                    log.debug("kubelet sync of %s: %s", namespace, exc.reason)
                except Exception:  # a dropped connection, a pod that failed: next round
                    log.exception("kubelet sync of %s failed", namespace)

    # --- one round -------------------------------------------------------------------------------

    def _sync(self, namespace: str) -> None:
        deployments = [
            self.api.sanitize_for_serialization(d)
            for d in self.apps.list_namespaced_deployment(namespace, _request_timeout=5).items
        ]
        seen = set()
        for dep in deployments:
            name = dep["metadata"]["name"]
            seen.add(name)
            self._sync_deployment(namespace, dep)
        with self._lock:
            gone = [k for k in self._state if k[0] == namespace and k[1] not in seen]
            for key in gone:
                for pod in self._state[key].pods:
                    pod.retiring_since = pod.retiring_since or time.monotonic()
        self._reap(namespace)
        self._publish(namespace)

    def _sync_deployment(self, namespace: str, dep: Obj) -> None:
        name = dep["metadata"]["name"]
        want = int(dep["spec"].get("replicas", 1))
        revision = template_revision(dep["spec"]["template"])
        with self._lock:
            state = self._state.setdefault((namespace, name), _DeploymentState())
        now = time.monotonic()
        for pod in state.pods:
            if pod.retiring_since is None and not pod.server.running:
                log.warning("pod %s exited; starting a new one", pod.name)
                pod.retiring_since = now
        live = [p for p in state.pods if p.retiring_since is None]
        current = [p for p in live if p.revision == revision]
        if want == 0:
            for pod in live:
                pod.retiring_since = now
        elif not current:
            pod = self._start_pod(namespace, name, revision, dep["spec"]["template"])
            with self._lock:
                state.pods.append(pod)
            current = [pod]
        for pod in current:
            pod.ready = pod.ready or _serving(pod.server.address)
        new_ready = want > 0 and all(p.ready for p in current)
        if new_ready:  # the rollout is complete: old revisions go
            for pod in live:
                if pod.revision != revision:
                    pod.retiring_since = now
        old_ready = any(p.ready for p in live if p.revision != revision)
        self._report(namespace, dep, want=want, new_ready=new_ready, old_ready=old_ready)

    def _start_pod(self, namespace: str, deployment: str, revision: str, template: Obj) -> Pod:
        # The drills send several calls a second to one-worker pods on 2 cores: the platform's
        # pods answer with the greedy pass unless a rollout sets a search budget in their env.
        env = {"SCHEDULER_TIME_BUDGET_MS": "0", **container_env(template)}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        name = f"{deployment}-{revision[:8]}-{next(self._names)}"
        server = ServerProcess(
            name=name,
            model_dir=self.model_dir,
            workdir=self.workdir / namespace,
            track=env.get("SCHEDULER_TRACK", "stable"),
            keys=self.keys_file,
            faults_file=self.faults_file(namespace, deployment),
            workers=1,
            env=env,
        )
        server.start()
        self.pod_starts += 1
        log.info("pod %s/%s started (track %s)", namespace, name, server.track)
        return Pod(name, namespace, deployment, revision, labels, server)

    def _report(
        self, namespace: str, dep: Obj, *, want: int, new_ready: bool, old_ready: bool
    ) -> None:
        """The status the Deployment controller would write, when it changed."""
        available = want if (new_ready or old_ready) else 0
        status = {
            "observedGeneration": dep["metadata"].get("generation", 0),
            "replicas": want + (want if old_ready and not new_ready else 0),
            "updatedReplicas": want if new_ready else 0,
            "readyReplicas": available,
            "availableReplicas": available,
        }
        current = {k: (dep.get("status") or {}).get(k, 0) for k in status}
        if current == status:
            return
        with contextlib.suppress(ApiException):  # changed meanwhile: next round
            self.apps.patch_namespaced_deployment_status(
                dep["metadata"]["name"], namespace, {"status": status}
            )

    def _reap(self, namespace: str) -> None:
        """Stop retired pods once their termination delay is over."""
        now = time.monotonic()
        done: list[Pod] = []
        with self._lock:
            for (ns, _), state in self._state.items():
                if ns != namespace:
                    continue
                for pod in list(state.pods):
                    if pod.retiring_since is not None and (
                        now - pod.retiring_since >= self.termination_delay or not pod.server.running
                    ):
                        state.pods.remove(pod)
                        done.append(pod)
        _stop_all(done)

    def _publish(self, namespace: str) -> None:
        services = self.core.list_namespaced_service(namespace, _request_timeout=5).items
        pods = self.pods(namespace)
        endpoints: dict[tuple[str, str], list[Endpoint]] = {}
        for svc in services:
            body = self.api.sanitize_for_serialization(svc)
            selector = (body.get("spec") or {}).get("selector") or {}
            endpoints[namespace, body["metadata"]["name"]] = _service_endpoints(selector, pods)
        targets = sorted(f"127.0.0.1:{p.server.metrics_port}" for p in pods)
        with self._lock:
            for key in [k for k in self._endpoints if k[0] == namespace]:
                self._endpoints.pop(key)
            self._endpoints.update(endpoints)
            changed = self._targets.get(namespace) != targets
            self._targets[namespace] = targets
        if changed and self.on_targets is not None:
            self.on_targets(namespace, targets)


def _service_endpoints(selector: dict[str, str], pods: list[Pod]) -> list[Endpoint]:
    """The ready pods the selector matches; when none is ready, the terminating ones that still
    serve (what kube-proxy does since Kubernetes 1.28: ProxyTerminatingEndpoints)."""
    matching = [p for p in pods if p.ready and _matches(selector, p.labels)]
    ready = [p for p in matching if p.retiring_since is None]
    return [Endpoint(p.server.address, p.track, p.name) for p in ready or matching]


def _serving(address: str) -> bool:
    try:
        return grpc_client.health_status(address, timeout=0.5, service="") == "SERVING"
    except grpc.RpcError:
        return False


def _stop_all(pods: list[Pod]) -> None:
    """SIGTERM every pod at once (each drains its calls), off the caller's thread."""
    for pod in pods:
        threading.Thread(target=pod.server.stop, name=f"stop-{pod.name}", daemon=True).start()
