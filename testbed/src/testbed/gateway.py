"""Traefik v3 as the platform's real gRPC gateway: GRPCRoutes in force, weights and all.

Traefik runs outside the cluster (its Gateway API provider reads the API server through a
kubeconfig), listens on one loopback port of the platform's network namespace, and forwards
each call to a pod IP from the backend Service's EndpointSlices, split by the GRPCRoute's
backendRef weights. It writes each route's ``Accepted`` and ``ResolvedRefs`` conditions, which
the operator reads before it counts a weight as in force.

It does not implement the ``RequestMirror`` filter (no implementation obtainable here does), so
rollouts through it mirror at the application level (``spec.routing.mirror: app``, the default).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries
from testbed.kube import START_TIMEOUT, KubeControlPlane
from testbed.process import ManagedProcess, free_port

CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_CLASS = "traefik"
LISTENER = "grpc"

Obj = dict[str, Any]


class TraefikGateway:
    """``start()``, then ``gateway(namespace, name)`` per plant; calls go to ``address``."""

    def __init__(self, kube: KubeControlPlane, directory: Path) -> None:
        self.kube = kube
        self.port = free_port()
        self.ping_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "traefik",
            [
                binaries.find("traefik"),
                f"--entryPoints.{LISTENER}.address=127.0.0.1:{self.port}",
                f"--entryPoints.ping.address=127.0.0.1:{self.ping_port}",
                "--ping=true",
                "--ping.entryPoint=ping",
                "--providers.kubernetesgateway=true",
                "--providers.providersThrottleDuration=0.2s",  # default 2 s: a test platform
                "--log.level=INFO",
                "--global.checkNewVersion=false",
                "--global.sendAnonymousUsage=false",
            ],
            directory / "traefik.log",
            env={"KUBECONFIG": str(kube.admin_kubeconfig)},
        )

    def start(self) -> TraefikGateway:
        self._apply(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {"controllerName": CONTROLLER},
            }
        )
        self.process.start()
        self.process.wait_ready(self._pong, START_TIMEOUT)
        return self

    def stop(self) -> None:
        self.process.stop()

    def describe(self) -> str:
        return f"traefik (gateway) at {self.address}"

    def gateway(self, namespace: str, name: str) -> None:
        """A Gateway of the Traefik class in ``namespace`` whose listener is Traefik's port
        (Traefik maps listeners to its entry points by port)."""
        self._apply(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [{"name": LISTENER, "protocol": "HTTP", "port": self.port}],
                },
            }
        )

    def _apply(self, body: Obj) -> None:
        self.kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def _pong(self) -> bool:
        url = f"http://127.0.0.1:{self.ping_port}/ping"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
