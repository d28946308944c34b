"""Fixtures that run the real operator process against the real kube-apiserver and Prometheus.

What stands in for the parts that do not run here:

- no kubelet and no Deployment controller: a ``Readiness`` thread keeps writing, through the
  status subresource, the status the Deployment controller would report once every pod of the
  current spec is up, for every Deployment in the test's namespaces;
- no scheduler pods: a ``MetricsTarget`` that Prometheus scrapes serves the scheduler's metric
  contract for the tracks ``stable``, ``shadow`` and ``canary`` of each test's namespace, at
  rates the test sets (and changes while the rollout runs);
- no gateway: the GRPCRoute is the real Gateway API CRD, read back as the API server has it.

``bed`` sets up one namespace the way a user's cluster looks before a rollout (a ``scheduler``
Deployment, its Service, a GRPCRoute to it) with healthy series; ``operator`` starts
``rollout-operator`` as a subprocess (``.kill()`` is a SIGKILL, ``.start()`` a restart);
``Recorder`` watches objects and keeps every version the API server announced, so a test can
assert an exact sequence of states instead of sampling them.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollout_operator.kubectl_plugin import main as schedrollout
from rollout_operator.mirror_config import get_mirror
from rollout_operator.resource import GROUP, PLURAL, VERSION
from rollout_operator.workloads import _available
from testbed.kube import KubeControlPlane
from testbed.loops import Loop
from testbed.metrics_target import MetricsTarget, contract_traffic
from testbed.operator_process import OperatorProcess
from testbed.prometheus import PrometheusServer, ScrapeJob
from testbed.recorder import Recorder
from tests.cluster.conftest import Cluster, cluster, route_crds  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
CRD = "schedulerrollouts.rollouts.scheduling.io"
JOB = "operator-flow"
GRPCROUTE = ("gateway.networking.k8s.io", "v1", "grpcroutes")
VIRTUALSERVICE = ("networking.istio.io", "v1", "virtualservices")
ROUTE_KINDS = {"gatewayAPI": GRPCROUTE, "istio": VIRTUALSERVICE}  # provider -> its route
STABLE_LABELS = {"app": "scheduler", "track": "stable"}
STABLE_IMAGE = "registry.example/scheduler:1.4.0"
CANDIDATE_IMAGE = "registry.example/scheduler:1.5.0"
PORT = 50051

Obj = dict[str, Any]


# --- the rollout manifest ------------------------------------------------------------------------

FAST_STEPS: list[Obj] = [
    {"shadow": {"duration": "3s"}},
    {"weight": 10, "duration": "3s"},
    {"weight": 25, "duration": "3s"},
    {"weight": 50, "duration": "3s"},
    {"approval": {}},
    {"weight": 100, "duration": "3s"},
]


def rollout_manifest(
    name: str,
    prometheus_url: str,
    *,
    steps: list[Obj] | None = None,
    target: str = "scheduler",
    route: str = "scheduler",
    provider: str = "gatewayAPI",
    webhook: str = "",
    **analysis: Any,
) -> Obj:
    """A SchedulerRollout with durations of seconds and a 1 s analysis interval."""
    body: Obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchedulerRollout",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": target},
            "candidate": {"image": CANDIDATE_IMAGE, "modelVersion": "2026.11.1"},
            "routing": {
                "provider": provider,
                "route": route,
                "stableService": target,
                "canaryService": f"{target}-canary",
                "port": PORT,
            },
            "steps": steps if steps is not None else FAST_STEPS,
            "analysis": {
                "interval": "1s",
                "prometheus": {"url": prometheus_url},
                **analysis,
            },
        },
    }
    if provider == "replicas":  # no route to name
        del body["spec"]["routing"]["route"]
    if webhook:
        body["spec"]["webhook"] = {"url": webhook}
    return body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (a port just bound and released)."""
    return f"http://127.0.0.1:{free_port()}"


def changes(values: list[Any]) -> list[Any]:
    """``values`` without consecutive repeats."""
    out: list[Any] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def route_weights(route: Obj, stable: str = "scheduler") -> tuple[int | None, int | None]:
    """(stable, canary) weights of the route's first rule (None: no such backendRef). A plant's
    route names no weight; the GRPCRoute schema defaults it to 1."""
    refs = route["spec"]["rules"][0]["backendRefs"]
    weights = {ref["name"]: ref.get("weight") for ref in refs}
    return weights.get(stable), weights.get(f"{stable}-canary")


def vs_weights(vs: Obj, stable: str = "scheduler") -> tuple[int | None, int | None]:
    """(stable, canary) weights of a VirtualService's first http route (None: unset)."""
    dests = vs["spec"]["http"][0]["route"]
    weights = {d["destination"]["host"]: d.get("weight") for d in dests}
    return weights.get(stable), weights.get(f"{stable}-canary")


# --- the cluster as the user has it before a rollout ---------------------------------------------


class Readiness:
    """Plays kubelet + Deployment controller: every Deployment in ``namespaces`` is kept
    reporting all its pods of the current spec available (checked every 0.1 s)."""

    def __init__(self, kubeconfig: Path) -> None:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.api = api
        self.apps = client.AppsV1Api(api)
        self.namespaces: set[str] = set()
        self._loop = Loop("readiness", 0.1, self._mark_all)

    def start(self) -> Readiness:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def _mark_all(self) -> None:
        for namespace in list(self.namespaces):
            with contextlib.suppress(ApiException):
                self._mark(namespace)

    def _mark(self, namespace: str) -> None:
        for dep in self.apps.list_namespaced_deployment(namespace).items:
            body = self.api.sanitize_for_serialization(dep)
            if _available(body):
                continue
            n = dep.spec.replicas or 0
            status = {
                "observedGeneration": dep.metadata.generation,
                "replicas": n,
                "updatedReplicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
            }
            with contextlib.suppress(ApiException):  # changed meanwhile: next round
                self.apps.patch_namespaced_deployment_status(
                    dep.metadata.name, namespace, {"status": status}
                )


@dataclass
class Bed:
    """One namespace with a stable scheduler, its Service and GRPCRoute, and its metrics."""

    cluster: Cluster
    namespace: str
    prometheus_url: str
    target: MetricsTarget
    recorders: list[Recorder] = field(default_factory=list)

    # --- set-up ---

    def plugin(self, *args: str) -> int:
        """``kubectl-schedrollout`` in this namespace, as the admin."""
        kubeconfig = str(self.cluster.plane.admin_kubeconfig)
        return schedrollout(["--kubeconfig", kubeconfig, "-n", self.namespace, *args])

    def add_scheduler(
        self, name: str = "scheduler", *, route: bool = True, provider: str = "gatewayAPI"
    ) -> None:
        """The stable Deployment and Service, and (``route``) the provider's route to it: a
        GRPCRoute, an Istio VirtualService, or none for the replica-ratio router."""
        labels = {**STABLE_LABELS, "app": name}
        container = {"name": "scheduler", "image": STABLE_IMAGE, "ports": [{"containerPort": PORT}]}
        self.cluster.create_deployment(
            self.namespace, name, labels=labels, replicas=3, containers=[container]
        )
        service = {
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"name": "grpc", "port": PORT}]},
        }
        self.cluster.core.create_namespaced_service(
            self.namespace, client.V1Service.model_validate(service)
        )
        if route and provider == "istio":
            vs = {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": name},
                "spec": {
                    "hosts": [name],
                    "http": [
                        {"route": [{"destination": {"host": name, "port": {"number": PORT}}}]}
                    ],
                },
            }
            self.cluster.custom.create_namespaced_custom_object(
                *VIRTUALSERVICE[:2], self.namespace, VIRTUALSERVICE[2], vs
            )
        elif route and provider == "gatewayAPI":
            body = {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GRPCRoute",
                "metadata": {"name": name},
                "spec": {
                    "parentRefs": [{"name": "plant-gateway"}],
                    "rules": [{"backendRefs": [{"name": name, "port": PORT}]}],
                },
            }
            self.cluster.custom.create_namespaced_custom_object(
                *GRPCROUTE[:2], self.namespace, GRPCROUTE[2], body
            )

    def traffic(self, track: str, **rates: Any) -> None:
        """The scheduler's contract series of ``track`` in this namespace, from now on."""
        contract_traffic(self.target, {"namespace": self.namespace, "track": track}, **rates)

    # --- the rollout ---

    def apply(self, body: Obj) -> None:
        self.cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def rollout(self, name: str) -> Obj:
        return cast(
            Obj, self.cluster.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        )  # fmt: skip

    def status(self, name: str) -> Obj:
        return self.rollout(name).get("status") or {}

    def wait_for(
        self,
        name: str,
        what: Callable[[Obj], bool],
        timeout: float,
        operator: OperatorProcess | None = None,
    ) -> Obj:
        """Poll the rollout's status until ``what(status)``; the status then."""
        deadline = time.monotonic() + timeout
        status: Obj = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if what(status):
                return status
            time.sleep(0.1)
        log = f"\noperator log:\n{operator.tail()}" if operator else ""
        raise AssertionError(f"rollout {name}: not there in {timeout}s; status {status}{log}")

    def wait_phase(
        self, name: str, phase: str, timeout: float, operator: OperatorProcess | None = None
    ) -> Obj:
        return self.wait_for(name, lambda s: s.get("phase") == phase, timeout, operator)

    # --- reading the world back ---

    def route(self, name: str = "scheduler", provider: str = "gatewayAPI") -> Obj:
        kind = ROUTE_KINDS[provider]
        return cast(
            Obj, self.cluster.custom.get_namespaced_custom_object(
                *kind[:2], self.namespace, kind[2], name
            )
        )  # fmt: skip

    def mirror(self, name: str = "scheduler-mirror") -> Obj | None:
        return get_mirror(self.cluster.core, self.namespace, name)

    def deployment(self, name: str) -> Obj | None:
        try:
            return self.cluster.deployment(self.namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, name: str) -> list[Obj]:
        found = self.cluster.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return [self.cluster.api.sanitize_for_serialization(e) for e in found]

    def record_routes(self, provider: str = "gatewayAPI") -> Recorder:
        kind = ROUTE_KINDS[provider]
        recorder = Recorder(
            self.cluster.custom.list_namespaced_custom_object,
            *kind[:2], self.namespace, kind[2],
        ).start()  # fmt: skip
        self.recorders.append(recorder)
        return recorder

    def record_rollouts(self) -> Recorder:
        recorder = Recorder(
            self.cluster.custom.list_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL,
        ).start()  # fmt: skip
        self.recorders.append(recorder)
        return recorder

    def record_deployments(self) -> Recorder:
        recorder = Recorder(
            self.cluster.apps.list_namespaced_deployment,
            self.namespace,
            sanitize=self.cluster.api.sanitize_for_serialization,
        ).start()
        self.recorders.append(recorder)
        return recorder

    def record_config_maps(self) -> Recorder:
        recorder = Recorder(
            self.cluster.core.list_namespaced_config_map,
            self.namespace,
            sanitize=self.cluster.api.sanitize_for_serialization,
        ).start()
        self.recorders.append(recorder)
        return recorder


@pytest.fixture(scope="session")
def sro_crd(cluster: Cluster, route_crds: None) -> Cluster:  # noqa: F811
    """The cluster with the SchedulerRollout CRD and the route CRDs installed."""
    cluster.plane.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    return cluster


@dataclass(frozen=True)
class FlowMetrics:
    target: MetricsTarget
    prometheus_url: str


@pytest.fixture(scope="module")
def flow_metrics(prometheus: PrometheusServer) -> Iterator[FlowMetrics]:
    """One scrape target for the module; each test writes series labelled with its namespace."""
    target = MetricsTarget().start()
    target.set_gauge("operator_flow_up", {}, 1.0)
    prometheus.scrape(ScrapeJob(JOB, (target.address,)))
    try:
        prometheus.wait_for_series(f'operator_flow_up{{job="{JOB}"}}')
        yield FlowMetrics(target, prometheus.url)
    finally:
        prometheus.forget(JOB)
        target.stop()


@pytest.fixture(scope="module")
def readiness(kube: KubeControlPlane) -> Iterator[Readiness]:
    marker = Readiness(kube.admin_kubeconfig).start()
    try:
        yield marker
    finally:
        marker.stop()


@pytest.fixture()
def make_bed(
    sro_crd: Cluster,
    flow_metrics: FlowMetrics,
    readiness: Readiness,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Bed]]:
    """Fresh namespaces, each with a stable scheduler behind a GRPCRoute (``make(provider=...)``:
    a VirtualService for ``istio``, no route for ``replicas``) and healthy series for the tracks
    stable, shadow and canary; Deployments in them are kept available."""
    beds: list[Bed] = []
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]

    def make(provider: str = "gatewayAPI") -> Bed:
        name = f"{stem}-{uuid.uuid4().hex[:6]}"
        sro_crd.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        bed = Bed(sro_crd, name, flow_metrics.prometheus_url, flow_metrics.target)
        bed.add_scheduler(provider=provider)
        for track in ("stable", "shadow", "canary"):
            bed.traffic(track)
        readiness.namespaces.add(name)
        beds.append(bed)
        return bed

    try:
        yield make
    finally:
        for bed in beds:
            for recorder in bed.recorders:
                recorder.stop()
            readiness.namespaces.discard(bed.namespace)


@pytest.fixture()
def bed(make_bed: Callable[..., Bed]) -> Bed:
    return make_bed()


@pytest.fixture()
def start_operator(
    kube: KubeControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """``start_operator(ns, ..., metrics_port=, health_port=)`` runs rollout-operator for those
    namespaces until the test ends; a failing test gets the operator's log in its report."""
    started: list[OperatorProcess] = []

    def start(*namespaces: str, metrics_port: int = 0, health_port: int = 0) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(
            kube.admin_kubeconfig,
            namespaces,
            log,
            metrics_port=metrics_port,
            health_port=health_port,
        )
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for process in started:
                print(f"--- {process.log} ---\n{process.tail(200)}")
