"""Where the server binaries are found.

`scripts/test-deps` installs the Debian servers, builds kube-apiserver, kube-controller-manager,
kube-scheduler, etcd, helm, traefik and coredns from their Go modules and copies the route CRDs
of the Gateway API and Istio modules into a cache outside the work tree (so a fresh clone on the
same machine reuses it). The lookup order of a binary is: an explicit environment variable, that
cache, then PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV_OVERRIDES = {
    "kube-apiserver": "KUBE_APISERVER_BIN",
    "kube-controller-manager": "KUBE_CONTROLLER_MANAGER_BIN",
    "kube-scheduler": "KUBE_SCHEDULER_BIN",
    "etcd": "ETCD_BIN",
    "prometheus": "PROMETHEUS_BIN",
    "promtool": "PROMTOOL_BIN",
    "mariadbd": "MARIADBD_BIN",
    "mariadb-install-db": "MARIADB_INSTALL_DB_BIN",
    "kubectl": "KUBECTL_BIN",
    "helm": "HELM_BIN",
    "traefik": "TRAEFIK_BIN",
    "coredns": "COREDNS_BIN",
}

# Debian puts the MariaDB daemon in /usr/sbin, which is not on every PATH.
EXTRA_DIRS = (Path("/usr/sbin"), Path("/usr/local/sbin"))


class MissingBinaryError(RuntimeError):
    """A server binary is not installed; the message says how to get it."""


def cache_dir() -> Path:
    """The build cache shared by every clone on this machine (see scripts/test-deps)."""
    override = os.environ.get("JOBSHOP_TESTBED_CACHE")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "jobshop-rollout"


def find(name: str) -> Path:
    """Absolute path of a server binary, or MissingBinaryError naming the fix."""
    env_var = ENV_OVERRIDES.get(name)
    if env_var and os.environ.get(env_var):
        path = Path(os.environ[env_var])
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise MissingBinaryError(
            f"{env_var}={path} is not an executable file; fix or unset it to use the servers "
            "that `bash scripts/test-deps` installs"
        )
    cached = cache_dir() / "bin" / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(map(str, EXTRA_DIRS)))
    if found:
        return Path(found)
    raise MissingBinaryError(
        f"{name} not found (looked in ${env_var or 'PATH'}, {cached.parent}, PATH); "
        "run `bash scripts/test-deps` to install and build the test servers"
    )


def route_crds() -> Path:
    """The folder of the real Gateway API and Istio CRDs, or MissingBinaryError naming the fix."""
    folder = cache_dir() / "route-crds"
    if not (folder / "istio.yaml").is_file():
        raise MissingBinaryError(
            f"the route CRDs are not in {folder}; run `bash scripts/test-deps` to fetch them"
        )
    return folder
