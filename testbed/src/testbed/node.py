"""One node of the end-to-end platform: the kubelet's part, with processes for containers.

The real kube-scheduler binds pods to this node and the real controllers do everything else;
``ProcessNode`` does what a kubelet does with what this machine has (no container runtime):

- registers its Node, renews its Lease in ``kube-node-lease`` and posts Ready heartbeats (the
  node-lifecycle controller would otherwise taint it ``not-ready`` and nothing would schedule);
- runs each Pod bound to it as a local process: the main container's ``command`` and ``args``
  (an image's entrypoint is ``entrypoint``: the scheduler image's ``schedctl``), its env with
  ``valueFrom.fieldRef`` (``status.podIP``, ``metadata.name``, ...) and ``$(VAR)`` expansion,
  ``hostPath`` volumes as path translation from the mount path to the host path, and
  ``configMap`` and ``secret`` volumes as files under the pod's folder, kept in step with their
  source each second (the kubelet's sync, faster) and translated the same way;
- gives each Pod its own IP from ``POD_CIDR`` (the platform's network namespace routes the range
  to its loopback, see ``scripts/netns``) and, with ``cluster_dns`` (the kubelet's
  ``--cluster-dns``), its own ``/etc/resolv.conf`` for ``dnsPolicy: ClusterFirst``: the
  namespace's search path and the cluster's resolver, bind-mounted in a mount namespace of the
  pod's own (``unshare -m``), as the kubelet mounts it into a container; reports phase, IPs and
  container state, and the Ready
  condition from the readiness probe (gRPC health, TCP or none);
- restarts exited containers as ``restartPolicy`` says, or ends the Pod Succeeded/Failed with
  the container's exit code, reason (Completed/Error) and termination message: each start gets
  an empty host file for the container's ``terminationMessagePath`` (default
  ``/dev/termination-log``, translated in args and env like a mount) whose first 4096 bytes
  become ``state.terminated.message`` (``FallbackToLogsOnError``: the log's tail when the file
  is empty and the container failed), as a Job's Pod reports its result to its controller;
- on deletion runs the ``preStop`` sleep, sends SIGTERM, SIGKILLs after the grace period, then
  removes the Pod object, as the kubelet does.

Fault injection (a drill's hook, not a kubelet's): every process gets ``--faults-file`` of its
Deployment, which the server honours only when the pod's env has ``SCHEDULER_ENABLE_FAULTS=1``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from jobshop_scheduler.bench.servers import terminate
from jobshop_scheduler.service import client as grpc_client
from rollout_operator.kube import none_if_missing
from testbed.kube import raw_items
from testbed.loops import Loop

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODE_NAME = "testbed-node"
POD_CIDR = "10.244.0.0/16"  # scripts/netns: `ip route add local 10.244.0.0/16 dev lo`
NODE_IP = "10.244.0.1"
SCHEDULER_ENTRYPOINT = (sys.executable, "-m", "jobshop_scheduler.cli")  # the image's `schedctl`
LOOP_S = 0.2
HEARTBEAT_S = 5.0
LEASE_SECONDS = 40
PROBE_PERIOD_S = 1.0  # the test platform probes each second, whatever periodSeconds says
KUBELET_VERSION = "v1.33.13"
TERMINATION_PATH = "/dev/termination-log"  # the API's default terminationMessagePath
MAX_MESSAGE_BYTES = 4096  # the kubelet's cap on a termination message
FALLBACK_LOG_LINES = 80  # FallbackToLogsOnError: the log's last lines, at most 2048 bytes
FALLBACK_LOG_BYTES = 2048
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# argv prefix: a mount namespace of the pod's own with its resolv.conf (the next argument) over
# /etc/resolv.conf, then exec the container's command (same PID: signals reach the server).
WITH_RESOLV_CONF = (
    "unshare", "--mount", "--propagation", "private", "--",
    "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
)  # fmt: skip


class NetworkNamespaceError(RuntimeError):
    """Pod IPs are not bindable here: the platform is not in its own network namespace."""


def check_pod_network() -> None:
    """Raise NetworkNamespaceError unless ``POD_CIDR`` addresses are local (scripts/netns)."""
    address = str(ipaddress.ip_network(POD_CIDR)[2])
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            raise NetworkNamespaceError(
                f"cannot bind pod address {address} ({exc.strerror}): the end-to-end platform "
                "runs in a network namespace of its own whose loopback holds the pod range "
                f"{POD_CIDR}; run it through `bash scripts/test` or `bash scripts/demo`, or "
                "wrap the command in `bash scripts/netns ...`"
            ) from exc


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined variable is replaced, ``$$`` escapes."""
    out = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value.replace("$$", "\0"))
    return out.replace("\0", "$")


def resolv_conf(namespace: str, nameserver: str, domain: str) -> str:
    """The kubelet's resolv.conf for a ``ClusterFirst`` pod: Service names resolve bare
    (``scheduler-canary``) or namespace-qualified, through the cluster's DNS."""
    search = f"{namespace}.svc.{domain} svc.{domain} {domain}"
    return f"search {search}\nnameserver {nameserver}\noptions ndots:5\n"


def translate(value: str, mounts: list[tuple[str, str]]) -> str:
    """A container path under a hostPath mount as the host path (longest mount first)."""
    for mount, host in mounts:
        value = re.sub(rf"(?<![\w/.-]){re.escape(mount)}(?=/|$|[\s,:;])", host, value)
    return value


def termination_message(path: Path, log_file: Path, *, failed: bool, policy: str) -> str:
    """The kubelet's message for a terminated container: the first 4096 bytes of its
    ``terminationMessagePath`` file; with ``FallbackToLogsOnError``, a failed container whose
    file is empty gets the tail of its log instead."""
    try:
        with path.open("rb") as file:
            message = file.read(MAX_MESSAGE_BYTES)
    except OSError:
        message = b""
    if not message and failed and policy == "FallbackToLogsOnError":
        with contextlib.suppress(OSError):
            lines = log_file.read_bytes().splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
            message = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return message.decode(errors="replace")


@dataclass
class PodProcess:
    """A running (or finished) pod: its process, address and what was last reported."""

    uid: str
    namespace: str
    name: str
    ip: str
    spec: Obj
    deployment: str
    started_at: str = ""
    restarts: int = 0
    ready: bool = False
    probed_at: float = 0.0
    projected_at: float = 0.0
    terminating: bool = False
    finished: bool = False
    exit_code: int | None = None  # once finished
    finished_at: str = ""
    message: str = ""  # the termination message, once finished
    waiting: str = ""  # why the container has not started (a volume's source is missing)
    proc: subprocess.Popen[bytes] | None = None
    reported: Obj = field(default_factory=dict)

    @property
    def container(self) -> Obj:
        containers: list[Obj] = self.spec["containers"]
        return containers[0]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ProcessNode:
    """See the module docstring; ``start()`` registers the node and begins its loops."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        *,
        name: str = NODE_NAME,
        faults_dir: Path | None = None,
        entrypoint: tuple[str, ...] = SCHEDULER_ENTRYPOINT,
        cluster_dns: str | None = None,
        cluster_domain: str = "cluster.local",
    ) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(self.api)
        self.leases = client.CoordinationV1Api(self.api)
        self.name = name
        self.workdir = workdir
        self.faults_dir = faults_dir
        self.entrypoint = entrypoint
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.pods: dict[str, PodProcess] = {}
        self._lock = threading.Lock()
        self._hosts = ipaddress.ip_network(POD_CIDR).hosts()
        next(self._hosts)  # .1 is the node's own address
        self._loops = [
            Loop(f"{name}-pods", LOOP_S, self._sync),
            Loop(f"{name}-heartbeat", HEARTBEAT_S, self._heartbeat),
        ]

    # --- what drills use -------------------------------------------------------------------------

    def faults_file(self, namespace: str, deployment: str) -> Path:
        assert self.faults_dir is not None, "this node injects no faults"
        return self.faults_dir / namespace / f"{deployment}.faults.json"

    def set_faults(self, namespace: str, deployment: str, **faults: float) -> None:
        """Write the Deployment's faults file (its servers watch it); no arguments clears it."""
        path = self.faults_file(namespace, deployment)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.replace(path)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ProcessNode:
        check_pod_network()
        self._register()
        self._renew_lease()
        for loop in self._loops:
            loop.start()
        return self

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        with self._lock:
            pods = list(self.pods.values())
            self.pods.clear()
        threads = [threading.Thread(target=self._kill, args=(p, 5.0)) for p in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # --- the node --------------------------------------------------------------------------------

    def _node_status(self) -> Obj:
        now = _now()
        resources = {"cpu": "16", "memory": "64Gi", "pods": "250"}
        return {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": NODE_IP},
                {"type": "Hostname", "address": self.name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "process node is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                "machineID": "testbed", "systemUUID": "testbed", "bootID": "testbed",
                "kernelVersion": os.uname().release, "osImage": "testbed process node",
                "containerRuntimeVersion": "process://1", "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }  # fmt: skip

    def _register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
            "status": self._node_status(),
        }
        try:
            self.core.create_node(body, _preload_content=False)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._post_status()

    def _post_status(self) -> None:
        self.core.patch_node_status(
            self.name, {"status": self._node_status()}, _preload_content=False
        )

    def _renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro_now(),
        }
        try:
            self.leases.patch_namespaced_lease(
                self.name, "kube-node-lease", {"spec": spec}, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.name}, "spec": spec}
            self.leases.create_namespaced_lease("kube-node-lease", body, _preload_content=False)  # type: ignore[arg-type]

    def _heartbeat(self) -> None:
        self._renew_lease()
        self._post_status()

    # --- pods ------------------------------------------------------------------------------------

    def _sync(self) -> None:
        reply = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.name}", _preload_content=False, _request_timeout=5
        )
        listed = {p["metadata"]["uid"]: p for p in raw_items(reply)}
        with self._lock:
            known = dict(self.pods)
        for uid, gone in known.items():
            if uid not in listed:  # removed without us (force delete): stop it
                self._forget(gone)
                threading.Thread(target=self._kill, args=(gone, 0.0), daemon=True).start()
        for uid, body in listed.items():
            meta, pod = body["metadata"], known.get(uid)
            if meta.get("deletionTimestamp"):
                if pod is None:
                    self._delete_object(meta["namespace"], meta["name"], uid)
                elif not pod.terminating:
                    pod.terminating = True
                    grace = meta.get("deletionGracePeriodSeconds")
                    threading.Thread(target=self._terminate, args=(pod, grace), daemon=True).start()
                continue
            if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed") and pod is None:
                continue
            running = pod or self._admit(body)
            if not running.terminating:
                self._tend(running)

    def _admit(self, body: Obj) -> PodProcess:
        meta = body["metadata"]
        pod = PodProcess(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            ip=str(next(self._hosts)),
            spec=body["spec"],
            deployment=_deployment_of(meta),
        )
        with self._lock:
            self.pods[pod.uid] = pod
        self._launch(pod)
        return pod

    def _environment(self, pod: PodProcess) -> dict[str, str]:
        fields = {
            "status.podIP": pod.ip, "status.hostIP": NODE_IP, "spec.nodeName": self.name,
            "metadata.name": pod.name, "metadata.namespace": pod.namespace,
        }  # fmt: skip
        env: dict[str, str] = {}
        for item in pod.container.get("env") or []:
            if "value" in item:
                env[item["name"]] = expand(str(item["value"]), env)
            else:
                path = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if path in fields:
                    env[item["name"]] = fields[path]
        return env

    def _mounts(self, pod: PodProcess) -> list[tuple[str, str]]:
        volumes = {
            v["name"]: v["hostPath"]["path"]
            for v in pod.spec.get("volumes") or []
            if "hostPath" in v
        }
        volumes |= {name: str(folder) for name, (folder, _) in self._config_maps(pod).items()}
        mounts = [
            (m["mountPath"].rstrip("/"), volumes[m["name"]])
            for m in pod.container.get("volumeMounts") or []
            if m["name"] in volumes
        ]
        mounts.append((self._termination_path(pod), str(self._termination_file(pod))))
        return sorted(mounts, key=lambda m: -len(m[0]))

    def _termination_path(self, pod: PodProcess) -> str:
        return str(pod.container.get("terminationMessagePath") or TERMINATION_PATH)

    def _termination_file(self, pod: PodProcess) -> Path:
        """The host file behind the container's terminationMessagePath (one per pod)."""
        return self.workdir / pod.namespace / f"{pod.name}.termination-log"

    def _log_file(self, pod: PodProcess) -> Path:
        return self.workdir / pod.namespace / f"{pod.name}.log"

    def _config_maps(self, pod: PodProcess) -> dict[str, tuple[Path, Obj]]:
        """The pod's configMap and secret volumes: name -> (the folder that holds its files,
        its source; a secret's as ``{"name": ..., "secret": True}``)."""
        base = self.workdir / pod.namespace / f"{pod.name}.volumes"
        found = {}
        for v in pod.spec.get("volumes") or []:
            if "configMap" in v:
                found[v["name"]] = (base / v["name"], v["configMap"])
            elif "secret" in v:
                source = v["secret"]
                found[v["name"]] = (
                    base / v["name"],
                    {"name": source["secretName"], "items": source.get("items"), "secret": True,
                     "optional": source.get("optional", False)},
                )  # fmt: skip
        return found

    def _volume_data(self, namespace: str, source: Obj) -> dict[str, str] | None:
        """A configMap's data, or a secret's decoded; None when it does not exist."""
        if source.get("secret"):
            secret = none_if_missing(
                functools.partial(self.core.read_namespaced_secret, source["name"], namespace)
            )
            if secret is None:
                return None
            return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        read = functools.partial(self.core.read_namespaced_config_map, source["name"], namespace)
        found = none_if_missing(read)
        return None if found is None else (found.data or {})

    def _missing_volume(self, pod: PodProcess) -> str:
        """Why the pod's volumes cannot be set up ("" when they can): a configMap or secret
        that does not exist and is not ``optional``. The kubelet keeps such a container in
        ``ContainerCreating`` until it appears; so does this node."""
        for source in (s for _, s in self._config_maps(pod).values()):
            if not source.get("optional") and self._volume_data(pod.namespace, source) is None:
                kind = "secret" if source.get("secret") else "configmap"
                return f'{kind} "{source["name"]}" not found'
        return ""

    def _project(self, pod: PodProcess) -> None:
        """Write each configMap (and secret) volume's keys as files (only what changed, each
        replaced at once, so a server watching a file never reads half of it); a missing
        optional ConfigMap is an empty folder (a missing required one keeps the container from
        starting: `_missing_volume`)."""
        pod.projected_at = time.monotonic()
        for folder, source in self._config_maps(pod).values():
            folder.mkdir(parents=True, exist_ok=True)
            data = self._volume_data(pod.namespace, source) or {}
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            files = {item["path"]: data[item["key"]] for item in items if item["key"] in data}
            for stale in set(p.name for p in folder.iterdir()) - set(files):
                (folder / stale).unlink()
            for name, text in files.items():
                path = folder / name
                if not path.is_file() or path.read_text() != text:
                    tmp = folder / f".{name}.tmp"
                    tmp.write_text(text)
                    tmp.replace(path)

    def _launch(self, pod: PodProcess) -> None:
        pod.waiting = self._missing_volume(pod)
        if pod.waiting:
            self._report(pod)
            return
        self._project(pod)
        termination = self._termination_file(pod)
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.write_bytes(b"")  # each start writes its own message, as the kubelet's
        env = self._environment(pod)
        mounts = self._mounts(pod)
        container = pod.container
        command = [expand(c, env) for c in container.get("command") or []] or list(self.entrypoint)
        argv = [translate(expand(a, env), mounts) for a in [*command, *container.get("args", [])]]
        if self.faults_dir is not None and pod.deployment:
            argv += ["--faults-file", str(self.faults_file(pod.namespace, pod.deployment))]
        env = {k: translate(v, mounts) for k, v in env.items()}
        logfile = self._log_file(pod)
        if self.cluster_dns and pod.spec.get("dnsPolicy", "ClusterFirst") == "ClusterFirst":
            resolv = logfile.with_suffix(".resolv.conf")
            resolv.write_text(resolv_conf(pod.namespace, self.cluster_dns, self.cluster_domain))
            argv = [*WITH_RESOLV_CONF, str(resolv), *argv]
        with logfile.open("ab") as out:
            pod.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
            )
        pod.started_at, pod.ready = _now(), False
        log.info("pod %s/%s started at %s (pid %d)", pod.namespace, pod.name, pod.ip, pod.proc.pid)
        self._report(pod)

    def _tend(self, pod: PodProcess) -> None:
        """Restart or finish an exited container; probe readiness; report what changed (a
        finished pod's report is retried until the API server took it)."""
        if pod.proc is None:  # waiting for a volume's source
            self._launch(pod)
            return
        if pod.finished:
            self._report(pod)
            return
        code = pod.proc.poll()
        if code is not None:
            policy = pod.spec.get("restartPolicy", "Always")
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                log.warning("pod %s/%s exited (%d): restarting", pod.namespace, pod.name, code)
                pod.restarts += 1
                self._launch(pod)
                return
            self._finish(pod, code)
            return
        now = time.monotonic()
        if now - pod.projected_at >= PROBE_PERIOD_S:
            self._project(pod)
        if now - pod.probed_at >= (PROBE_PERIOD_S if pod.ready else LOOP_S):
            pod.probed_at = now
            pod.ready = self._probe(pod)
        self._report(pod)

    def _probe(self, pod: PodProcess) -> bool:
        probe = pod.container.get("readinessProbe") or {}
        try:
            if "grpc" in probe:
                port = int(probe["grpc"]["port"])
                service = probe["grpc"].get("service") or ""
                address = f"{pod.ip}:{port}"
                return grpc_client.health_status(address, timeout=0.5, service=service) == "SERVING"
            if "tcpSocket" in probe:
                port = _port(pod.container, probe["tcpSocket"]["port"])
                with socket.create_connection((pod.ip, port), timeout=0.5):
                    return True
        except (grpc.RpcError, OSError, ValueError):
            return False
        return True

    def _finish(self, pod: PodProcess, code: int) -> None:
        policy = str(pod.container.get("terminationMessagePolicy") or "File")
        pod.message = termination_message(
            self._termination_file(pod), self._log_file(pod), failed=code != 0, policy=policy
        )
        pod.exit_code, pod.finished_at, pod.finished = code, _now(), True
        log.info("pod %s/%s finished (exit %d)", pod.namespace, pod.name, code)
        self._report(pod)

    def _report(self, pod: PodProcess) -> None:
        container = pod.container
        exit_code = pod.exit_code if pod.finished else None
        if pod.proc is None:
            message = f"MountVolume.SetUp failed: {pod.waiting}" if pod.waiting else ""
            state: Obj = {"waiting": {"reason": "ContainerCreating", "message": message}}
            phase = "Pending"
        elif exit_code is None:
            state = {"running": {"startedAt": pod.started_at}}
            phase = "Running"
        else:
            state = {"terminated": _terminated(pod, exit_code)}
            phase = "Succeeded" if exit_code == 0 else "Failed"
        ready = "True" if pod.ready and exit_code is None else "False"
        conditions: list[Obj] = [
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ]
        status: Obj = {
            "phase": phase,
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            # the kubelet's: when it took the pod, before any container (or volume) was ready
            "startTime": pod.reported.get("startTime") or pod.started_at or _now(),
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"process://{pod.proc.pid if pod.proc else 0}",
                    "ready": ready == "True",
                    "started": pod.proc is not None and exit_code is None,
                    "restartCount": pod.restarts,
                    "state": state,
                }
            ],
        }
        if status == pod.reported:
            return
        now = _now()
        stamped = [{**c, "lastTransitionTime": now} for c in conditions]
        with contextlib.suppress(ApiException):  # gone or the API server away: next round
            self.core.patch_namespaced_pod_status(
                pod.name, pod.namespace, {"status": {**status, "conditions": stamped}},
                _preload_content=False,
            )  # fmt: skip
            pod.reported = status

    def _terminate(self, pod: PodProcess, grace: int | None) -> None:
        """preStop sleep, SIGTERM, SIGKILL after the grace period, then the object goes."""
        budget = float(
            grace if grace is not None else pod.spec.get("terminationGracePeriodSeconds", 30)
        )
        started = time.monotonic()
        pre_stop = ((pod.container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
        if pre_stop and grace != 0:
            self._loops[0].stopping.wait(min(float(pre_stop["seconds"]), budget))
        self._kill(pod, max(0.0, budget - (time.monotonic() - started)))
        self._forget(pod)
        self._delete_object(pod.namespace, pod.name, pod.uid)

    def _kill(self, pod: PodProcess, grace: float) -> None:
        if pod.proc is not None and terminate(pod.proc, grace):
            log.info("pod %s/%s stopped (%s)", pod.namespace, pod.name, pod.proc.returncode)

    def _forget(self, pod: PodProcess) -> None:
        with self._lock:
            self.pods.pop(pod.uid, None)

    def _delete_object(self, namespace: str, name: str, uid: str) -> None:
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
        )
        with contextlib.suppress(ApiException):  # already gone
            self.core.delete_namespaced_pod(name, namespace, body=options, _preload_content=False)


def _terminated(pod: PodProcess, exit_code: int) -> Obj:
    """``state.terminated`` as the kubelet writes it (an empty message is left out)."""
    state: Obj = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": pod.started_at,
        "finishedAt": pod.finished_at,
    }
    if pod.message:
        state["message"] = pod.message
    return state


def _deployment_of(meta: Obj) -> str:
    """The Deployment a pod belongs to: its ReplicaSet's name less the pod-template-hash."""
    suffix = "-" + (meta.get("labels") or {}).get("pod-template-hash", "")
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet" and owner["name"].endswith(suffix):
            return str(owner["name"][: -len(suffix)])
    return ""


def _port(container: Obj, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"no container port named {port}")
