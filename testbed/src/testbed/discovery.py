"""Prometheus' view of the platform's pods: what ``kubernetes_sd_configs`` (role pod) would find.

Debian's Prometheus is built without Kubernetes service discovery, so ``PodDiscovery`` does its
part: every ``refresh`` seconds it lists the Running pods through the API server and gives
Prometheus, per namespace, one scrape job of ``podIP:port`` for each container port named
``metrics``, labelled with the pod's namespace (a reload only when a namespace's set changed).
"""

from __future__ import annotations

import contextlib

from kubernetes import client

from testbed.kube import raw_items
from testbed.loops import Loop
from testbed.prometheus import PrometheusServer, ScrapeJob


class PodDiscovery:
    def __init__(
        self, api: client.ApiClient, prometheus: PrometheusServer, *, refresh: float = 0.5
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.prometheus = prometheus
        self._targets: dict[str, tuple[str, ...]] = {}
        self._loop = Loop("pod-discovery", refresh, self.sync)

    def start(self) -> PodDiscovery:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def sync(self) -> None:
        reply = self.core.list_pod_for_all_namespaces(
            field_selector="status.phase=Running", _preload_content=False, _request_timeout=5
        )
        found: dict[str, set[str]] = {}
        for pod in raw_items(reply):
            ip = (pod.get("status") or {}).get("podIP")
            ports = [
                p["containerPort"]
                for c in pod["spec"]["containers"]
                for p in c.get("ports") or []
                if p.get("name") == "metrics"
            ]
            if ip and ports:
                found.setdefault(pod["metadata"]["namespace"], set()).update(
                    f"{ip}:{port}" for port in ports
                )
        for namespace in set(found) | set(self._targets):
            targets = tuple(sorted(found.get(namespace, ())))
            if targets == self._targets.get(namespace, ()):
                continue
            job = f"pods-{namespace}"
            with contextlib.suppress(OSError):  # Prometheus killed by a drill: next round
                if targets:
                    self.prometheus.scrape(ScrapeJob(job, targets, {"namespace": namespace}))
                else:
                    self.prometheus.forget(job)
                self._targets[namespace] = targets
