"""The real kube-controller-manager and kube-scheduler of the control plane's Kubernetes pin.

With them the Deployment -> ReplicaSet -> Pod chain, pod scheduling, EndpointSlices, Jobs,
ServiceAccounts, namespace deletion and the node lifecycle (taints from Lease heartbeats) are the
real controllers' work. Each runs under its own identity (a client certificate for
``system:kube-controller-manager`` / ``system:kube-scheduler``, the users whose roles the API
server bootstraps), without leader election and without a serving port.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from testbed import binaries
from testbed.kube import START_TIMEOUT, KubeControlPlane
from testbed.process import ManagedProcess

CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"


class KubeControllers:
    """kube-controller-manager + kube-scheduler against ``kube``; logs under ``directory``."""

    def __init__(self, kube: KubeControlPlane, directory: Path) -> None:
        self.kube = kube
        directory.mkdir(parents=True, exist_ok=True)
        common = ["--leader-elect=false", "--secure-port=0", "--v=1"]
        self.controller_manager = ManagedProcess(
            "kube-controller-manager",
            [
                binaries.find("kube-controller-manager"),
                f"--kubeconfig={kube.kubeconfig_for(CONTROLLER_MANAGER_USER)}",
                *common,
                "--controllers=*",
                # each controller calls the API server as its own ServiceAccount, as kubeadm runs it
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={kube.service_account_key}",
                f"--root-ca-file={kube.ca.cert_path}",
                "--allocate-node-cidrs=false",
                "--configure-cloud-routes=false",
                # a test platform: react within a second (defaults are 5-30 s batching windows)
                "--node-monitor-period=1s",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-service-endpoint-syncs=10",
            ],
            directory / "kube-controller-manager.log",
        )
        self.scheduler = ManagedProcess(
            "kube-scheduler",
            [
                binaries.find("kube-scheduler"),
                f"--kubeconfig={kube.kubeconfig_for(SCHEDULER_USER)}",
                *common,
            ],
            directory / "kube-scheduler.log",
        )

    def start(self) -> KubeControllers:
        for process in (self.controller_manager, self.scheduler):
            process.start()
        for process, started in (
            (self.controller_manager, "Caches are synced"),
            (self.scheduler, "Starting Kubernetes Scheduler"),
        ):
            process.wait_ready(partial(_log_says, process, started), START_TIMEOUT)
        return self

    def stop(self) -> None:
        self.scheduler.stop()
        self.controller_manager.stop()

    def describe(self) -> str:
        return "kube-controller-manager + kube-scheduler (real)"


def _log_says(process: ManagedProcess, line: str) -> bool:
    """Started: its log says so (neither serves a port here to probe)."""
    return process.log_path.exists() and line in process.log_path.read_text(errors="replace")
