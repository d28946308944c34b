"""CoreDNS as the platform's cluster DNS: Service names resolve in the pods as in a cluster.

The scheduler's application-level mirror calls the candidate's Service by name
(``scheduler-canary:50051``), so the pods need what a cluster gives them: a resolver that knows
the Services, and a ``resolv.conf`` with the namespace's search path (``ProcessNode`` writes
that, as the kubelet does with ``--cluster-dns``). CoreDNS's ``kubernetes`` plugin answers from
the API server's Services and EndpointSlices, under the ``system:coredns`` role that kubeadm
gives it. It listens on the node's address (``NODE_IP:53``), as NodeLocal DNSCache does on a
node: there is no kube-proxy to carry a ``kube-dns`` Service address, so the platform's Services
that pods call are headless and resolve straight to the ready pods' IPs.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import yaml

from testbed import binaries
from testbed.kube import START_TIMEOUT, KubeControlPlane
from testbed.node import NODE_IP
from testbed.process import ManagedProcess, free_port

CLUSTER_DOMAIN = "cluster.local"
USER = "system:coredns"
# kubeadm's ClusterRole for CoreDNS: what the kubernetes plugin lists and watches.
RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": USER},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    },
]


class ClusterDNS:
    """CoreDNS serving ``CLUSTER_DOMAIN`` at ``address``:53; ``start()`` waits until its
    ``kubernetes`` plugin has synced with the API server."""

    def __init__(self, kube: KubeControlPlane, directory: Path, address: str = NODE_IP) -> None:
        self.kube = kube
        self.address = address
        self.ready_port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        corefile = directory / "Corefile"
        corefile.write_text(
            f"{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{\n"
            f"    bind {address}\n"
            f"    ready 127.0.0.1:{self.ready_port}\n"
            "    errors\n"
            f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
            f"        kubeconfig {kube.kubeconfig_for(USER)}\n"
            "        ttl 1\n"  # a test platform: pods come and go within seconds
            "    }\n"
            "}\n"
        )
        self.process = ManagedProcess(
            "coredns",
            [binaries.find("coredns"), "-conf", corefile],
            directory / "coredns.log",
        )

    def start(self) -> ClusterDNS:
        self.kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(RBAC))
        self.process.start()
        self.process.wait_ready(self._ready, START_TIMEOUT)
        return self

    def stop(self) -> None:
        self.process.stop()

    def describe(self) -> str:
        return f"coredns (cluster DNS) at {self.address}:53"

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.ready_port}/ready"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
