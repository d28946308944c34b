"""`rollout-scale-bench`: many plants, each with its own Deployment and rollout, started together
on one operator. How late is each step transition against its timer, what do the operator's
memory and CPU come to, how many API requests per second does the platform serve?

Each plant's pods are light (a TCP listener on the pod IP with a TCP readiness probe): the
bench measures the operator, not the scheduler, and 2 x ``--rollouts`` model servers would not
fit on 2 cores. Each rollout walks weight steps of ``--step-seconds`` with one rollback rule on a
query that always has data (``vector(1)``), so every step ends on its timer plus the wait for a
round taken after it began, then promotes. A transition's lateness is the next step's
``stepStartedAt`` minus (this step's ``stepStartedAt`` + its duration), from the statuses the
API server announced. Goal (docs/e2e.md): p95 lateness <= 1 s at 50 rollouts, operator RSS
<= 250 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from tqdm import tqdm

from rollout_operator.resource import GROUP, PLURAL, VERSION
from testbed import MissingBinaryError, ServerStartError
from testbed.e2e import GATEWAY, PORT, E2EPlatform
from testbed.kube import raw_items
from testbed.loops import Loop
from testbed.operator_process import OperatorProcess

Obj = dict[str, Any]
WEIGHTS = (10, 25, 50)
TERMINAL = ("Succeeded", "RolledBack", "Failed", "Invalid")
LIGHT_POD = [sys.executable, "-c", "import os, socket, time\n"
             "s = socket.create_server((os.environ['POD_IP'], int(os.environ['PORT'])))\n"
             "while True: time.sleep(3600)"]  # fmt: skip


def _plant(namespace: str) -> Iterator[Obj]:
    labels = {"app": "scheduler", "track": "stable"}
    container = {
        "name": "scheduler",
        "image": "registry.example/scheduler:1.4.0",
        "command": LIGHT_POD,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PORT", "value": str(PORT)},
            {"name": "SCHEDULER_TRACK", "value": "stable"},
        ],
        "ports": [{"containerPort": PORT, "name": "grpc"}],
        "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
    }
    yield {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "scheduler", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container],
                                       "terminationGracePeriodSeconds": 2}}},
    }  # fmt: skip
    yield {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "scheduler", "namespace": namespace},
        "spec": {"selector": labels, "ports": [{"name": "grpc", "port": PORT}]},
    }  # fmt: skip
    yield {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
        "metadata": {"name": "scheduler", "namespace": namespace},
        "spec": {"parentRefs": [{"name": GATEWAY}],
                 "rules": [{"backendRefs": [{"name": "scheduler", "port": PORT}]}]},
    }  # fmt: skip


def _rollout(prometheus_url: str, step_s: int) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchedulerRollout",
        "metadata": {"name": "scale"},
        "spec": {
            "targetRef": {"name": "scheduler"},
            "candidate": {"image": "registry.example/scheduler:1.5.0"},
            "routing": {"provider": "gatewayAPI", "route": "scheduler",
                        "stableService": "scheduler", "canaryService": "scheduler-canary",
                        "port": PORT},
            "steps": [{"weight": w, "duration": f"{step_s}s"} for w in WEIGHTS],
            "analysis": {
                "interval": "1s",
                "prometheus": {"url": prometheus_url},
                "rollback": [{"name": "platform-up", "query": "vector(1)", "below": 0.5}],
                "shadowCompare": {"enabled": False},
            },
        },
    }  # fmt: skip


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Watcher:
    """Polls every rollout's status: the start time each step had, and the final phases."""

    def __init__(self, custom: client.CustomObjectsApi) -> None:
        self.custom = custom
        self.starts: dict[tuple[str, int], float] = {}
        self.phases: dict[str, str] = {}
        self.loop = Loop("scale-watcher", 0.25, self._poll)

    def _poll(self) -> None:
        reply = self.custom.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, _preload_content=False, _request_timeout=10
        )
        for item in raw_items(reply):
            status = item.get("status") or {}
            namespace = item["metadata"]["namespace"]
            self.phases[namespace] = status.get("phase", "")
            started = _epoch(status.get("stepStartedAt"))
            if status.get("phase") == "Canary" and started is not None:
                self.starts.setdefault((namespace, int(status["step"])), started)
            if status.get("phase") == "Promoting" and started is not None:
                self.starts.setdefault((namespace, len(WEIGHTS)), started)


class Usage:
    """The operator process's peak RSS and CPU seconds, sampled each second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.cpu_start = self.cpu_end = self._cpu()
        self.loop = Loop("scale-usage", 1.0, self._sample)

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
        self.cpu_end = self._cpu()


def _api_requests(platform: E2EPlatform) -> float:
    text = platform.kube._get("/metrics").decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _start_plants(platform: E2EPlatform, namespaces: list[str], deadline: float) -> None:
    for namespace in namespaces:
        platform.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        platform.kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(_plant(namespace)))
    apps = client.AppsV1Api(platform.api)
    ready: set[str] = set()
    with tqdm(total=len(namespaces), desc="stable pods ready", unit="plant") as bar:
        while len(ready) < len(namespaces):
            for namespace in set(namespaces) - ready:
                status = apps.read_namespaced_deployment_status("scheduler", namespace).status
                if status is not None and (status.available_replicas or 0) >= 1:
                    ready.add(namespace)
                    bar.update(1)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(namespaces) - len(ready)} plants never became ready")
            time.sleep(0.5)


def _wait_finished(watcher: Watcher, namespaces: list[str], deadline: float) -> None:
    done = 0
    with tqdm(total=len(namespaces), desc="rollouts finished", unit="rollout") as bar:
        while done < len(namespaces) and time.monotonic() < deadline:
            time.sleep(1.0)
            now_done = sum(watcher.phases.get(ns) in TERMINAL for ns in namespaces)
            bar.update(now_done - done)
            done = now_done


def _report(
    watcher: Watcher, usage: Usage, namespaces: list[str], step_s: int, *, wall: float, api: float
) -> bool:
    """Print the table; whether the goal was met by rollouts that all succeeded."""
    lateness = [
        watcher.starts[ns, i + 1] - (watcher.starts[ns, i] + step_s)
        for ns in namespaces
        for i in range(len(WEIGHTS))
        if (ns, i) in watcher.starts and (ns, i + 1) in watcher.starts
    ]
    succeeded = [watcher.phases.get(ns) for ns in namespaces].count("Succeeded")
    cpu = usage.cpu_end - usage.cpu_start
    print(f"\n{len(namespaces)} rollouts x {len(WEIGHTS)} steps of {step_s} s on one operator "
          f"({os.cpu_count()} cores), {wall:.0f} s")  # fmt: skip
    print("| measure | value |\n|---|---|")
    print(f"| rollouts Succeeded | {succeeded} of {len(namespaces)} |")
    print(f"| step transitions measured | {len(lateness)} |")
    if lateness:
        print(f"| lateness p50 / p95 / max | {_percentile(lateness, 0.5):.2f} / "
              f"{_percentile(lateness, 0.95):.2f} / {max(lateness):.2f} s |")  # fmt: skip
    print(f"| operator peak RSS | {usage.peak_rss / 2**20:.0f} MB |")
    print(f"| operator CPU | {cpu:.0f} s ({100 * cpu / wall:.0f} % of one core) |")
    print(f"| API requests/s (all clients) | {api:.0f} |")
    ok = bool(lateness) and _percentile(lateness, 0.95) <= 1.0 and usage.peak_rss <= 250 * 2**20
    print(f"goal (p95 lateness <= 1 s, RSS <= 250 MB): {'met' if ok else 'NOT met'}")
    return ok and succeeded == len(namespaces)


def run(platform: E2EPlatform, rollouts: int, step_s: int, timeout_s: float) -> int:
    namespaces = [f"scale-{i:02d}" for i in range(1, rollouts + 1)]
    deadline = time.monotonic() + timeout_s
    _start_plants(platform, namespaces, deadline)
    log = platform.workdir / "operator.log"
    operator = OperatorProcess(platform.kube.admin_kubeconfig, tuple(namespaces), log).start()
    platform.operators.append(operator)
    assert operator.process is not None
    usage, watcher = Usage(operator.process.pid), Watcher(platform.custom)
    for worker in (usage, watcher):
        worker.loop.start()
    requests_before, started = _api_requests(platform), time.monotonic()
    body = _rollout(platform.prometheus.url, step_s)
    for namespace in namespaces:
        platform.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    _wait_finished(watcher, namespaces, deadline)
    wall = time.monotonic() - started
    api_rate = (_api_requests(platform) - requests_before) / wall
    usage.loop.stop()
    watcher.loop.stop()
    return 0 if _report(watcher, usage, namespaces, step_s, wall=wall, api=api_rate) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollout-scale-bench",
        description="Many plants with a rollout each, started together on one operator: step "
        "lateness against the timers, the operator's memory and CPU, API requests per second. "
        "Run it in the platform's network namespace: bash scripts/netns uv run "
        "rollout-scale-bench.",
    )
    parser.add_argument("--rollouts", type=int, default=50, help="default: %(default)s")
    parser.add_argument("--step-seconds", type=int, default=20, help="default: %(default)s")
    parser.add_argument("--timeout-seconds", type=float, default=900, help="default: %(default)s")
    parser.add_argument("--workdir", type=Path, help="server data and logs (default: temporary)")
    args = parser.parse_args(argv)
    if args.rollouts < 1 or args.step_seconds < 1:
        parser.error("--rollouts and --step-seconds must be at least 1")
    try:
        with ExitStack() as stack:
            workdir = args.workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-"))
            )
            platform = stack.enter_context(E2EPlatform(workdir))
            return run(platform, args.rollouts, args.step_seconds, args.timeout_seconds)
    except (MissingBinaryError, ServerStartError, RuntimeError, TimeoutError) as exc:
        print(f"rollout-scale-bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
