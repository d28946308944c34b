"""A Service's endpoints as a gateway sees them: read from the real EndpointSlices.

The endpointslice controller of kube-controller-manager writes them from the pods' Ready
conditions; ``EndpointSlices`` re-reads the slices of the namespaces it is asked about every
``refresh`` seconds and answers, per Service, the ready endpoints or, while none is ready, the
terminating ones that still serve (what kube-proxy and the gateways do since Kubernetes 1.28).
Each endpoint carries the track label of its pod, for the clients' records.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from rollout_operator.workloads import TRACK_LABEL
from testbed.kube import raw_items
from testbed.loops import Loop

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Endpoint:
    address: str  # host:port of the gRPC server
    track: str  # the pod's track label ("" when unknown)
    pod: str


class EndpointSlices:
    """See the module docstring. ``endpoints(namespace, service)`` never blocks on the API."""

    def __init__(self, api: client.ApiClient, *, port_name: str = "grpc", refresh: float = 0.1):
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.port_name = port_name
        self.namespaces: set[str] = set()
        self._endpoints: dict[tuple[str, str], list[Endpoint]] = {}
        self._tracks: dict[tuple[str, str], str] = {}  # (namespace, pod) -> track label
        self._lock = threading.Lock()
        self._loop = Loop("endpointslices", refresh, self._read_all)

    def endpoints(self, namespace: str, service: str) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints.get((namespace, service), []))

    def watch(self, namespace: str) -> None:
        self.namespaces.add(namespace)
        self._read(namespace)

    def forget(self, namespace: str) -> None:
        self.namespaces.discard(namespace)

    def start(self) -> EndpointSlices:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def _read_all(self) -> None:
        """Every watched namespace; one the API server does not answer keeps its last view."""
        for namespace in list(self.namespaces):
            self._read(namespace)

    def _read(self, namespace: str) -> None:
        reply = self.discovery.list_namespaced_endpoint_slice(
            namespace, _preload_content=False, _request_timeout=2
        )
        slices = raw_items(reply)
        found: dict[str, list[tuple[Obj, int]]] = {}
        for item in slices:
            service = (item["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
            ports = [p["port"] for p in item.get("ports") or [] if p.get("name") == self.port_name]
            if service and ports:
                found.setdefault(service, []).extend(
                    (e, ports[0]) for e in item.get("endpoints") or []
                )
        pods = {
            ((e.get("targetRef") or {}).get("name") or "")
            for endpoints in found.values()
            for e, _ in endpoints
        }
        if pods - {pod for ns, pod in self._tracks if ns == namespace}:
            self._read_tracks(namespace)
        answer = {
            (namespace, service): self._pick(namespace, endpoints)
            for service, endpoints in found.items()
        }
        with self._lock:
            for key in [k for k in self._endpoints if k[0] == namespace]:
                del self._endpoints[key]
            self._endpoints.update(answer)

    def _pick(self, namespace: str, endpoints: list[tuple[Obj, int]]) -> list[Endpoint]:
        def of(entry: tuple[Obj, int]) -> list[Endpoint]:
            endpoint, port = entry
            pod = (endpoint.get("targetRef") or {}).get("name") or ""
            track = self._tracks.get((namespace, pod), "")
            return [Endpoint(f"{a}:{port}", track, pod) for a in endpoint["addresses"]]

        ready = [e for e in endpoints if (e[0].get("conditions") or {}).get("ready")]
        serving = [e for e in endpoints if (e[0].get("conditions") or {}).get("serving")]
        return [x for e in (ready or serving) for x in of(e)]

    def _read_tracks(self, namespace: str) -> None:
        reply = self.core.list_namespaced_pod(namespace, _preload_content=False, _request_timeout=2)
        for pod in raw_items(reply):
            labels = pod["metadata"].get("labels") or {}
            self._tracks[namespace, pod["metadata"]["name"]] = labels.get(TRACK_LABEL, "")
