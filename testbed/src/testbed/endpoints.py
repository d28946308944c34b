"""A Service's ready endpoints, read from the real EndpointSlices.

The endpointslice controller of kube-controller-manager writes them from the pods' Ready
conditions. The platform waits on them (a plant's stable pod, a test's canary) and the platform
tests name pods and addresses by them; the gateway (Traefik) reads the same slices itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from testbed.kube import raw_items

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Endpoint:
    address: str  # host:port of the gRPC server
    pod: str


def ready_endpoints(
    api: client.ApiClient, namespace: str, service: str, port_name: str = "grpc"
) -> list[Endpoint]:
    """The ready endpoints of ``service`` on its port ``port_name``, as the API server has them."""
    reply = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"{SERVICE_NAME_LABEL}={service}",
        _preload_content=False, _request_timeout=2,
    )  # fmt: skip
    found: list[Endpoint] = []
    for item in raw_items(reply):
        ports = [p["port"] for p in item.get("ports") or [] if p.get("name") == port_name]
        for endpoint in item.get("endpoints") or [] if ports else []:
            if not (endpoint.get("conditions") or {}).get("ready"):
                continue
            pod = (endpoint.get("targetRef") or {}).get("name") or ""
            found += [Endpoint(f"{address}:{ports[0]}", pod) for address in endpoint["addresses"]]
    return found
