"""`rollout-demo`: the project's main job, on an embedded default.

Brings up the local platform (kube-apiserver + etcd, Prometheus) on loopback, applies what the
project ships (CRDs, example rollout) and reports each part. Parts that later milestones deliver
are reported as "not built yet" instead of being faked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed import MissingBinaryError, ServerStartError
from testbed.kube import KubeControlPlane
from testbed.process import ManagedProcess, free_port
from testbed.prometheus import PrometheusServer

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_REQUEST = REPO_ROOT / "examples" / "requests" / "production-170.json"


@dataclass(frozen=True)
class PartReport:
    part: str
    state: str
    detail: str


def _print_table(rows: list[PartReport]) -> None:
    widths = [
        max(len(getattr(r, f)) for r in [PartReport("part", "state", "detail"), *rows])
        for f in ("part", "state")
    ]
    print(f"{'part':<{widths[0]}}  {'state':<{widths[1]}}  detail")
    print(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 6}")
    for r in rows:
        print(f"{r.part:<{widths[0]}}  {r.state:<{widths[1]}}  {r.detail}")


@contextlib.contextmanager
def _started(server: KubeControlPlane | PrometheusServer, label: str) -> Iterator[None]:
    t0 = time.monotonic()
    print(f"starting {label} ...", flush=True)
    server.start()
    print(f"  {server.describe()} (ready in {time.monotonic() - t0:.1f}s)", flush=True)
    try:
        yield
    finally:
        server.stop()


def _apply_dir(plane: KubeControlPlane, folder: Path, part: str, arrives_with: str) -> PartReport:
    manifests = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not manifests:
        return PartReport(part, "not built yet", f"arrives with {arrives_with}")
    out = plane.kubectl("apply", "-f", str(folder))
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return PartReport(part, "applied", "; ".join(lines[:3]))


def _schedctl(*args: str) -> subprocess.CompletedProcess[str]:
    schedctl = shutil.which("schedctl")
    if schedctl is None:
        raise MissingBinaryError("schedctl is not on PATH: run `uv sync` (scripts/demo does)")
    return subprocess.run([schedctl, *args], capture_output=True, text=True, check=False)


def _answer_detail(request: Path, done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """(state, detail) of a `schedctl schedule --json` run."""
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        return "failed", lines[-1]
    answer = json.loads(done.stdout)
    gain = 100 * (1 - answer["makespan"] / answer["baseline_makespan"])
    versus = f"{gain:.1f}% shorter" if gain >= 0 else f"{-gain:.1f}% longer"
    return "scheduled", (
        f"{request.name}: makespan {answer['makespan']} vs legacy {answer['baseline_makespan']}"
        f" ({versus}), {answer['policy_used']}, completion"
        f" {answer['completion_rate']:.2f}, {answer['latency_ms']:.0f} ms"
    )


def _schedule_locally(request: Path) -> PartReport:
    """The shipped model on a 170-job production-like request, next to the legacy rule."""
    state, detail = _answer_detail(
        request, _schedctl("schedule", str(request), "--local", "--json")
    )
    return PartReport("scheduler (PPO, in-process)", state, detail)


def _schedule_over_grpc(request: Path, workdir: Path) -> PartReport:
    """The same request through a real `schedctl serve`, with an API key, over loopback."""
    part = "gRPC scheduler service"
    workdir.mkdir(parents=True, exist_ok=True)
    keys, key_file = workdir / "keys.txt", workdir / "client.key"
    made = _schedctl("keygen", "--label", "demo", "--keys-file", str(keys))
    if made.returncode != 0:
        return PartReport(part, "failed", made.stderr.strip())
    key_file.write_text(made.stdout)
    key_file.chmod(0o600)
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = ManagedProcess(
        "schedctl serve",
        [shutil.which("schedctl") or "schedctl", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--metrics-port", str(free_port()), "--keys", str(keys),
         "--audit-dir", str(workdir / "audit"), "--log-format", "text"],
        workdir / "serve.log",
    )  # fmt: skip
    server.start()
    try:
        server.wait_ready(lambda: _schedctl("health", "--target", target).returncode == 0, 120)
        done = _schedctl("schedule", str(request), "--target", target,
                         "--api-key-file", str(key_file), "--json")  # fmt: skip
    finally:
        server.stop()
    state, detail = _answer_detail(request, done)
    audit = workdir / "audit" / "audit.jsonl"
    lines = len(audit.read_text().splitlines()) if audit.exists() else 0
    return PartReport(part, state, f"{detail} (server side); API key, {lines} audit line(s)")


def run(workdir: Path, keep: bool) -> list[PartReport]:
    plane = KubeControlPlane(workdir / "kube")
    prometheus = PrometheusServer(workdir / "prometheus")
    with _started(plane, "kube-apiserver + etcd"), _started(prometheus, "prometheus"):
        rows = [
            PartReport("control plane", "running", plane.describe()),
            PartReport("prometheus", "running", prometheus.describe()),
            _apply_dir(
                plane, REPO_ROOT / "crds", "SchedulerRollout CRD", "the operator issue (#6)"
            ),
            _schedule_locally(EXAMPLE_REQUEST),
            _schedule_over_grpc(EXAMPLE_REQUEST, workdir / "scheduler"),
            PartReport(
                "operator",
                "not in the demo yet",
                "built and tested (rollout-operator, kubectl-schedrollout; docs/operator.md); "
                "the demo runs it with issue #7",
            ),
            PartReport("staged rollout demo", "not built yet", "arrives with issue #7"),
        ]
        print()
        _print_table(rows)
        if keep:
            print(f"\nkubeconfig: {plane.admin_kubeconfig}")
            print("platform kept running; press Ctrl-C to stop it")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollout-demo",
        description="Run the staged-rollout demo on a local control plane (loopback only).",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where servers keep data and logs (default: a temporary folder, removed afterwards)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the platform running until Ctrl-C (to explore with kubectl)",
    )
    args = parser.parse_args(argv)
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            run(args.workdir, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="rollout-demo-") as tmp:
                run(Path(tmp), args.keep)
    except MissingBinaryError as exc:
        print(f"rollout-demo: {exc}", file=sys.stderr)
        return 2
    except ServerStartError as exc:
        print(f"rollout-demo: a server failed to start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
