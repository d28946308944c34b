"""A local Kubernetes control plane: etcd + kube-apiserver, envtest style (no kubelet; the
end-to-end platform adds the controllers of testbed.controllers and the node of testbed.node).

RBAC authorization is on and identities come from client certificates, so RBAC tests can ask
for a kubeconfig of any user/groups. The admin kubeconfig works for kubectl and the Python
clients alike (certificates are embedded, not referenced by path).
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries
from testbed.pki import CertificateAuthority, service_account_key
from testbed.process import ManagedProcess, free_port

START_TIMEOUT = 120.0


def raw_items(reply: Any) -> list[dict[str, Any]]:
    """The items of a list call made with ``_preload_content=False`` (plain JSON: listing
    through the client's models costs more CPU than the rest of a round)."""
    items: list[dict[str, Any]] = json.loads(reply.data)["items"]
    return items


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


class Etcd:
    def __init__(self, directory: Path, *, with_controllers: bool = False) -> None:
        """``with_controllers``: a controller-manager will run (testbed.controllers), so the
        ServiceAccount admission plugin can stay on: its controller makes the default accounts."""
        self.directory = directory
        self.client_port = free_port()
        peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self.process = ManagedProcess(
            "etcd",
            [
                binaries.find("etcd"),
                "--name=testbed",
                f"--data-dir={directory / 'data'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=testbed={peer}",
                "--unsafe-no-fsync",  # a test cluster: speed over durability
                "--log-level=warn",
            ],
            directory / "etcd.log",
        )

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._healthy, START_TIMEOUT)

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
            return b'"health":"true"' in resp.read()

    def describe(self) -> str:
        with urllib.request.urlopen(f"{self.url}/version", timeout=2) as resp:
            return f"etcd {json.load(resp)['etcdserver']}"

    def stop(self) -> None:
        self.process.stop()


class KubeControlPlane:
    """etcd + kube-apiserver on free loopback ports in `directory`."""

    def __init__(self, directory: Path, *, with_controllers: bool = False) -> None:
        """``with_controllers``: a controller-manager will run (testbed.controllers), so the
        ServiceAccount admission plugin can stay on: its controller makes the default accounts."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = CertificateAuthority(directory / "pki")
        self.etcd = Etcd(directory / "etcd")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        serving = self.ca.issue(
            "apiserver",
            "kube-apiserver",
            ip_sans=("127.0.0.1",),
            dns_sans=("localhost",),
            server=True,
        )
        self.service_account_key = sa_key = service_account_key(directory / "pki")
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            [
                binaries.find("kube-apiserver"),
                f"--etcd-servers={self.etcd.url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={directory / 'certs'}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.ca.cert_path}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # Without a controller-manager nothing would create default ServiceAccounts.
                *([] if with_controllers else ["--disable-admission-plugins=ServiceAccount"]),
                "--allow-privileged=true",
                "--profiling=false",
            ],
            directory / "kube-apiserver.log",
        )
        self.admin_kubeconfig = self.kubeconfig_for("testbed-admin", ("system:masters",))

    def kubeconfig_for(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig that authenticates as `user` in `groups` through a client certificate."""
        pair = self.ca.issue(f"user-{user}", user, organizations=groups)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": _b64(self.ca.cert_path),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(pair.cert),
                        "client-key-data": _b64(pair.key),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "testbed", "user": user}}],
            "current-context": user,
        }
        path = self.directory / f"kubeconfig-{user}.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def start(self) -> None:
        self.etcd.start()
        self.start_apiserver()

    def start_apiserver(self) -> None:
        self.apiserver.start()
        self.apiserver.wait_ready(self._ready, START_TIMEOUT, interval=0.5)

    def restart_apiserver(self) -> None:
        """Restart kube-apiserver on the same port and etcd: state survives, clients reconnect."""
        self.apiserver.stop()
        self.start_apiserver()

    def _get(self, path: str) -> bytes:
        """GET from the API server as the admin (the readiness probe and version need no client)."""
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        admin = self.directory / "pki" / "user-testbed-admin"
        context.load_cert_chain(f"{admin}.crt", f"{admin}.key")
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5, context=context) as resp:
            body: bytes = resp.read()
            return body

    def _ready(self) -> bool:
        return self._get("/readyz") == b"ok"

    def describe(self) -> str:
        version = json.loads(self._get("/version"))["gitVersion"]
        return f"kube-apiserver {version} + {self.etcd.describe()} at {self.url} (RBAC on)"

    def stop(self) -> None:
        self.apiserver.stop()
        self.etcd.stop()

    def install_route_crds(self) -> None:
        """The real Gateway API and Istio CRDs (see ``binaries.route_crds``), Established.
        Server-side apply: Istio's CRDs are too large for the last-applied annotation."""
        folder = binaries.route_crds().resolve()  # kubectl reads no folder through a link
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(folder))
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/grpcroutes.gateway.networking.k8s.io", "crd/virtualservices.networking.istio.io",
        )  # fmt: skip

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None) -> str:
        """Run the real kubectl against this control plane; raise with its stderr on failure."""
        argv = [
            str(binaries.find("kubectl")),
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            *args,
        ]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout
