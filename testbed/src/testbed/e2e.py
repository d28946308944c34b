"""The end-to-end platform on one machine: what the demo, the fault drills and the reaction-time
benchmark run on.

Real parts: kube-apiserver + etcd with the project's CRDs and the real Gateway API and Istio
CRDs, kube-controller-manager and kube-scheduler (Deployments, ReplicaSets, pod binding,
EndpointSlices, namespaces, the node lifecycle), CoreDNS as the cluster DNS (``testbed.dns``),
Traefik v3 as every plant's gRPC gateway (``testbed.gateway``: it routes by the GRPCRoute's
weights and reports the route's status), Prometheus scraping real ``schedctl serve`` processes
(found by ``PodDiscovery``: Debian's Prometheus has no Kubernetes discovery), the operator as
its own process, real gRPC calls with an API key from the plant's clients (``TrafficDriver``)
to the gateway. The one stand-in: ``ProcessNode`` is the kubelet, with processes for containers
and pod IPs in the platform's own network namespace (scripts/netns).

A *plant* is one namespace as a user has it before the first rollout: a ``scheduler``
Deployment running the legacy rule (``SCHEDULER_DEFAULT_POLICY=mwkr``), its Service, and a
GRPCRoute to it, with traffic flowing.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.service.keys import add_key
from rollout_operator.resource import GROUP, PLURAL, VERSION
from rollout_operator.routers.base import RouteAcceptance
from rollout_operator.routers.gatewayapi import parents_acceptance
from rollout_operator.workloads import candidate_name
from testbed.controllers import KubeControllers
from testbed.discovery import PodDiscovery
from testbed.dns import ClusterDNS
from testbed.endpoints import Endpoint, ready_endpoints
from testbed.gates import install_policy, plant_objects, wait_in_effect
from testbed.gateway import TraefikGateway
from testbed.kube import KubeControlPlane
from testbed.node import ProcessNode, check_pod_network
from testbed.operator_process import OperatorProcess
from testbed.prometheus import PrometheusServer
from testbed.traffic import GRPCROUTE, RouteHistory, RouteView, TrafficDriver

REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS = REPO_ROOT / "crds"
EXAMPLE_ROLLOUT = REPO_ROOT / "examples" / "rollout.yaml"
PORT = 50051
GATEWAY = "plant-gateway"  # the GRPCRoute's parent: the plant's Gateway of the Traefik class
METRICS_PORT = 9464
MODELS_MOUNT = "/opt/scheduler/models"
KEYS_MOUNT = "/etc/scheduler/keys"
MIRROR_MOUNT = "/etc/scheduler/mirror"  # the chart's: the ConfigMap the operator writes
STABLE_IMAGE = "registry.example/scheduler:1.4.0"
POD_READY_TIMEOUT_S = 240.0

Obj = dict[str, Any]


def example_rollout(
    name: str,
    prometheus_url: str,
    *,
    step_s: int = 10,
    interval_s: int = 2,
    extra_env: dict[str, str] | None = None,
    gates: bool = False,
    **analysis: Any,
) -> Obj:
    """examples/rollout.yaml with its days compressed to ``step_s`` seconds, its analysis every
    ``interval_s`` and Prometheus at ``prometheus_url``. Shadow copies come from the stable pods
    (``mirror: app``, the default: Traefik implements no RequestMirror filter). The candidate
    runs PPO. Without ``gates`` the plan has no verify step, a plain approval and the mean
    shadow comparison (the drills of the other parts of the plan)."""
    body = cast(Obj, yaml.safe_load(EXAMPLE_ROLLOUT.read_text()))
    body["metadata"] = {"name": name}
    spec = body["spec"]
    if not gates:
        spec["steps"] = [s for s in spec["steps"] if "verify" not in s]
        for step in spec["steps"]:
            if "approval" in step:
                step["approval"] = {}
        spec["analysis"]["shadowCompare"].pop("test", None)
    env = {e["name"]: e["value"] for e in spec["candidate"].get("env") or []}
    env |= {"SCHEDULER_DEFAULT_POLICY": "ppo", **(extra_env or {})}
    spec["candidate"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    for step in spec["steps"]:
        holder = step.get("shadow", step)
        if "duration" in holder:
            holder["duration"] = f"{step_s}s"
    spec["analysis"]["interval"] = f"{interval_s}s"
    spec["analysis"]["prometheus"] = {"url": prometheus_url}
    spec["analysis"].update(copy.deepcopy(analysis))
    return body


@dataclass
class Plant:
    """One namespace with a stable scheduler, its route and its clients."""

    platform: E2EPlatform
    namespace: str
    traffic: TrafficDriver
    routes: RouteHistory
    operators: list[OperatorProcess] = field(default_factory=list)

    # --- the rollout ----------------------------------------------------------------------------

    def apply(self, body: Obj) -> None:
        self.platform.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def delete(self, name: str) -> None:
        self.platform.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def rollout(self, name: str) -> Obj | None:
        try:
            return cast(
                Obj,
                self.platform.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str) -> Obj:
        found = self.rollout(name)
        return (found or {}).get("status") or {}

    def route(self) -> RouteView:
        return RouteView.of(self._route())

    def _route(self) -> Obj:
        return cast(
            Obj,
            self.platform.custom.get_namespaced_custom_object(
                *GRPCROUTE[:2], self.namespace, GRPCROUTE[2], "scheduler"
            ),
        )

    def acceptance(self) -> RouteAcceptance:
        """What the gateway says of the route's current generation."""
        route = self._route()
        parents = (route.get("status") or {}).get("parents") or []
        return parents_acceptance(int(route["metadata"]["generation"]), parents)

    def wait_route_in_force(self, timeout: float = 10.0) -> RouteView:
        """Until the gateway accepted the route's current generation; the route then."""
        deadline = time.monotonic() + timeout
        while True:
            acceptance = self.acceptance()
            if acceptance.state == "Accepted" or time.monotonic() > deadline:
                assert acceptance.state == "Accepted", acceptance
                return self.route()
            time.sleep(0.1)

    def shadow_answers(self, window: str = "15m") -> int:
        """Requests the candidate's shadow pods answered in ``window``, from Prometheus (the
        clients never see them): mirrored copies, and a verify Job's calls."""
        query = (
            f'sum(max_over_time(scheduler_requests_total{{namespace="{self.namespace}",'
            f'track="shadow",code="OK"}}[{window}]))'
        )
        result = self.platform.prometheus.query(query)
        return int(float(result[0]["value"][1])) if result else 0

    def shadow_answers_logged(self) -> int:
        """Requests the candidate's shadow pods answered, from their logs on the node. Unlike
        ``shadow_answers`` it sees a pod that answered and was removed between two scrapes (a
        verify Job's replay, then the rollback that scales the candidate to zero)."""
        answered = 0
        for log in Path(self.platform.node.workdir, self.namespace).glob("*.log"):
            for line in log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("track") == "shadow":
                        answered += record.get("code") == "OK"
        return answered

    def mirrored_copies(self, window: str = "15m") -> int:
        """Copies the stable pods' app mirror sent in ``window``, from Prometheus."""
        query = (
            f'sum(max_over_time(scheduler_mirror_requests_total{{namespace="{self.namespace}",'
            f'outcome="sent"}}[{window}]))'
        )
        result = self.platform.prometheus.query(query)
        return int(float(result[0]["value"][1])) if result else 0

    def deployment(self, name: str) -> Obj | None:
        try:
            dep = self.platform.apps.read_namespaced_deployment(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(Obj, self.platform.api.sanitize_for_serialization(dep))  # type: ignore[no-untyped-call]

    def set_candidate_faults(self, **faults: float) -> None:
        """Faults of the candidate Deployment's pods (``latency_ms``, ``drop_job_fraction``,
        ``error_rate``); the candidate's env must enable them (``SCHEDULER_ENABLE_FAULTS=1``)."""
        self.platform.node.set_faults(self.namespace, candidate_name("scheduler"), **faults)

    def wait_for(self, name: str, what: Any, timeout: float, label: str = "") -> Obj:
        """Poll the rollout's status until ``what(status)``; the status then."""
        deadline = time.monotonic() + timeout
        status: Obj = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiException, OSError):
                status = self.status(name)
                if what(status):
                    return status
            time.sleep(0.2)
        logs = "\n".join(f"--- {op.log} ---\n{op.tail(80)}" for op in self.operators)
        raise AssertionError(
            f"rollout {self.namespace}/{name}: {label or 'condition'} not reached in "
            f"{timeout:.0f}s; status {status}\n{logs}"
        )

    def wait_phase(self, name: str, phase: str, timeout: float) -> Obj:
        return self.wait_for(name, lambda s: s.get("phase") == phase, timeout, f"phase {phase}")

    def start_operator(self, *namespaces: str, log_name: str = "operator") -> OperatorProcess:
        """The operator for this plant (and ``namespaces``), logging into the work folder."""
        scope = (self.namespace, *namespaces)
        log = self.platform.workdir / self.namespace / f"{log_name}-{len(self.operators)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        operator = OperatorProcess(self.platform.kube.admin_kubeconfig, scope, log)
        self.operators.append(operator)
        self.platform.operators.append(operator)
        return operator.start()


class E2EPlatform:
    """Everything of the module docstring, under ``workdir``; ``start()`` then ``add_plant()``."""

    def __init__(
        self, workdir: Path, *, model_dir: Path = DEFAULT_MODEL_DIR, rate: float = 6.0
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.kube = KubeControlPlane(workdir / "kube", with_controllers=True)
        self.controllers: KubeControllers | None = None
        self.gateway: TraefikGateway | None = None
        self.prometheus = PrometheusServer(workdir / "prometheus")
        self.model_dir = model_dir
        self.rate = rate
        self.keys_file = workdir / "api-keys.txt"
        self.api_key = ""
        self.plants: list[Plant] = []
        self.operators: list[OperatorProcess] = []
        self.kubeconfigs: dict[str, Path] = {}  # the plant's people (testbed.gates.USERS)
        self._node: ProcessNode | None = None
        self._dns: ClusterDNS | None = None
        self._discovery: PodDiscovery | None = None
        self._api: client.ApiClient | None = None

    # --- handles ---------------------------------------------------------------------------------

    @property
    def api(self) -> client.ApiClient:
        assert self._api is not None, "start() the platform first"
        return self._api

    @property
    def node(self) -> ProcessNode:
        assert self._node is not None, "start() the platform first"
        return self._node

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        check_pod_network()  # before any server starts: the one precondition of this machine
        self.kube.start()
        self.controllers = KubeControllers(self.kube, self.workdir / "controllers").start()
        self.prometheus.start()
        kubeconfig = str(self.kube.admin_kubeconfig)
        self._api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.kube.install_route_crds()
        self.kube.kubectl("apply", "-f", str(CRDS))
        self.kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.kubeconfigs = install_policy(self.kube)
        if not self.keys_file.exists():
            self.api_key, _ = add_key(self.keys_file, "e2e-clients")
        else:
            self.api_key = (self.workdir / "client.key").read_text().strip()
        (self.workdir / "client.key").write_text(self.api_key)
        self._dns = ClusterDNS(self.kube, self.workdir / "dns").start()
        self._node = ProcessNode(
            self.kube.admin_kubeconfig, self.workdir / "pods", faults_dir=self.workdir / "faults",
            cluster_dns=self._dns.address,
        ).start()  # fmt: skip
        self.gateway = TraefikGateway(self.kube, self.workdir / "gateway").start()
        self._discovery = PodDiscovery(self.api, self.prometheus).start()

    def stop(self) -> None:
        for plant in self.plants:
            plant.traffic.stop()
            plant.routes.stop()
        for operator in self.operators:
            operator.stop()
        if self._discovery is not None:
            self._discovery.stop()
        if self._node is not None:
            self._node.stop()
        for server in (self.gateway, self._dns):
            if server is not None:
                server.stop()
        if self.controllers is not None:
            self.controllers.stop()
        self.prometheus.stop()
        self.kube.stop()

    def describe(self) -> str:
        controllers = self.controllers.describe() if self.controllers else "no controllers"
        return (
            f"e2e platform: {self.kube.describe()}; {controllers}; node {self.node.name} "
            f"(processes); {self._dns.describe() if self._dns else 'no DNS'}; "
            f"{self.gateway.describe() if self.gateway else 'no gateway'}; "
            f"{self.prometheus.describe()}"
        )

    def remove_plant(self, plant: Plant) -> None:
        """Stop the plant's clients and operators, and delete its namespace: the namespace
        controller deletes its pods, which the node stops (logs stay in the work folder)."""
        plant.traffic.stop()
        plant.routes.stop()
        for operator in plant.operators:
            operator.stop()
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(plant.namespace)
        if plant in self.plants:
            self.plants.remove(plant)

    def __enter__(self) -> E2EPlatform:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- plants ----------------------------------------------------------------------------------

    def add_plant(self, namespace: str, *, rate: float | None = None, seed: int = 0) -> Plant:
        """The namespace with a stable legacy scheduler and its Gateway of the Traefik class,
        and clients calling the gateway once Traefik routes the plant's GRPCRoute (``rate``
        calls a second, the platform's by default; 0: no clients)."""
        assert self.gateway is not None, "start() the platform first"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        self.gateway.gateway(namespace, GATEWAY)
        for body in (*_plant_objects(self.model_dir, self.keys_file, namespace),
                     *plant_objects(self.api_key)):  # fmt: skip
            self.kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))
        wait_in_effect(self.kube, namespace)
        self.wait_endpoints(namespace, "scheduler")
        routes = RouteHistory(self.api, namespace).start()
        plant = Plant(self, namespace, TrafficDriver(
            self.gateway.address, plant_host(namespace), self.api_key,
            rate=self.rate if rate is None else rate, seed=seed,
        ), routes)  # fmt: skip
        plant.wait_route_in_force(POD_READY_TIMEOUT_S)
        plant.traffic.wait_routed(POD_READY_TIMEOUT_S)
        plant.traffic.start()
        self.plants.append(plant)
        return plant

    def ready_endpoints(self, namespace: str, service: str) -> list[Endpoint]:
        return ready_endpoints(self.api, namespace, service)

    def wait_endpoints(
        self, namespace: str, service: str, timeout: float = POD_READY_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_endpoints(namespace, service):
                return
            time.sleep(0.2)
        raise TimeoutError(f"Service {namespace}/{service} has no ready endpoint after {timeout}s")


def plant_host(namespace: str) -> str:
    """The host name a plant's clients call its gateway by: every plant's Gateway listens on
    Traefik's one port, so the GRPCRoute's ``hostnames`` keep each plant's calls to its route."""
    return f"{namespace}.plant.test"


def _plant_objects(model_dir: Path, keys_file: Path, namespace: str) -> Iterator[Obj]:
    """The plant's Deployment (the chart's pod template in small: the model, the API keys and
    the mirror ConfigMap mounted, the pod IP from the downward API, a gRPC readiness probe, a
    preStop sleep so that a gateway stops routing before the server drains), its Service and
    its GRPCRoute. The Service is headless, as gRPC Services often are (clients balance over
    the pod IPs themselves): the platform has cluster DNS but no kube-proxy, and the stable
    pods' mirror calls the canary Service (the operator makes it headless too) by name."""
    labels = {"app": "scheduler", "track": "stable"}
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "SCHEDULER_TRACK", "value": "stable"},
        {"name": "SCHEDULER_DEFAULT_POLICY", "value": "mwkr"},  # the legacy scheduler
        # The drills send several calls a second to one-worker pods on 2 cores: the pods answer
        # with the greedy pass unless a rollout sets a search budget in their env.
        {"name": "SCHEDULER_TIME_BUDGET_MS", "value": "0"},
    ]
    container = {
        "name": "scheduler",
        "image": STABLE_IMAGE,
        "args": [
            "serve", "--host=$(POD_IP)", f"--port={PORT}", f"--metrics-port={METRICS_PORT}",
            f"--model-dir={MODELS_MOUNT}", f"--keys={KEYS_MOUNT}/{keys_file.name}",
            "--workers=1", "--log-format=json", f"--mirror-config={MIRROR_MOUNT}/mirror.json",
        ],
        "env": env,
        "ports": [
            {"containerPort": PORT, "name": "grpc"},
            {"containerPort": METRICS_PORT, "name": "metrics"},
        ],
        "readinessProbe": {
            "grpc": {"port": PORT, "service": "scheduler.v1.Scheduler"},
            "periodSeconds": 1,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
        "volumeMounts": [
            {"name": "model", "mountPath": MODELS_MOUNT, "readOnly": True},
            {"name": "keys", "mountPath": KEYS_MOUNT, "readOnly": True},
            {"name": "mirror", "mountPath": MIRROR_MOUNT, "readOnly": True},
        ],
    }  # fmt: skip
    volumes = [
        {"name": "model", "hostPath": {"path": str(model_dir.resolve())}},
        {"name": "keys", "hostPath": {"path": str(keys_file.parent.resolve())}},
        {"name": "mirror", "configMap": {"name": "scheduler-mirror", "optional": True}},
    ]
    yield {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "scheduler", "labels": {"app": "scheduler"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": volumes,
                    "automountServiceAccountToken": False,
                },
            },
        },
    }
    yield {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "scheduler"},
        "spec": {
            "clusterIP": "None",
            "selector": labels,
            "ports": [{"name": "grpc", "port": PORT}],
        },
    }
    yield {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "scheduler"},
        "spec": {
            "parentRefs": [{"name": GATEWAY}],
            "hostnames": [plant_host(namespace)],
            "rules": [{"backendRefs": [{"name": "scheduler", "port": PORT}]}],
        },
    }
