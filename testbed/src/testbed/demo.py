"""`rollout-demo`: the project's main job. Three staged rollouts on a local control plane.

1. It brings up the platform of ``testbed.e2e`` (kube-apiserver + etcd, Prometheus, the
   operator as a process, real scheduler processes, clients sending real Schedule calls through
   the GRPCRoute) with a plant whose stable scheduler runs the legacy rule, and the sign-off
   policy with its people (alice: ops-manager, bob: plant-manager, mallory: neither).
2. It applies examples/rollout.yaml (days compressed to seconds) and shows a live table while
   the PPO candidate goes verify (a Job replays recorded requests and load-tests it) -> shadow
   -> 10% -> 25% -> 50% -> sign-offs -> 100% -> promoted. mallory's sign-off is refused by the
   API server; alice and bob sign with ``kubectl-schedrollout approve --role``. Then
   ``kubectl-schedrollout report`` writes the rollout's report.
3. It applies a rollout whose candidate plans by earliest due date (longer plans) and shows
   the verify step rolling it back before any traffic reaches it.
4. It applies a rollout without the verify step whose candidate adds 12 s to every answer and
   shows the operator rolling it back on the latency trigger, with the reason.
5. It writes report.md, samples.json and rollout.png to the output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from testbed import MissingBinaryError, NetworkNamespaceError, ServerStartError
from testbed.e2e import E2EPlatform, Plant, example_rollout
from testbed.observe import HEADER, Sample, format_row, sample
from testbed.traffic import Outcome

REPO_ROOT = Path(__file__).resolve().parents[3]
TERMINAL = ("Succeeded", "RolledBack", "Failed", "Invalid")
FAULT_LATENCY_MS = 12_000  # above the example's 10 s rollback trigger
# The PPO candidate's search budget: enough to show shorter plans in the makespan column, small
# enough that 6 calls/s (all of them mirrored during shadow) fit the demo's 2 cores.
DEMO_SEARCH_MS = 30
ROLLOUT_TIMEOUT_S = 240.0

Obj = dict[str, Any]


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


class Demo:
    def __init__(self, platform: E2EPlatform, out: Path, step_s: int, interval_s: int) -> None:
        self.platform = platform
        self.out = out
        self.step_s = step_s
        self.interval_s = interval_s
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self.summaries: list[Obj] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- one rollout, watched ---------------------------------------------------------------------

    def watch(self, plant: Plant, name: str, on_status: Callable[[Obj], None]) -> Obj:
        """Sample until the rollout is terminal; print a row when something moved."""
        steps = len(plant.rollout(name)["spec"]["steps"])  # type: ignore[index]
        print(HEADER, flush=True)
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
        last_key: tuple[Any, ...] = ()
        last_print = 0.0
        status: Obj = {}
        while time.monotonic() < deadline:
            status = plant.status(name)
            route = plant.route()
            row = sample(
                self.started, self.platform.prometheus, plant.namespace, name, status,
                weight=route.weight_of("scheduler-canary"),
                mirror=int(status.get("mirrorPercent") or 0),
                steps=steps,
            )  # fmt: skip
            self.samples.append(row)
            key = (row.phase, row.step, row.weight, row.mirror)
            if key != last_key or time.monotonic() - last_print >= 5:
                print(format_row(row), flush=True)
                last_key, last_print = key, time.monotonic()
            on_status(status)
            if status.get("phase") in TERMINAL:
                return status
            time.sleep(1.0)
        raise TimeoutError(f"rollout {name} did not finish in {ROLLOUT_TIMEOUT_S:.0f}s: {status}")

    def schedrollout(self, user: str, plant: Plant, *argv: str) -> str:
        """``kubectl-schedrollout`` as ``user`` (a kubeconfig of their own); what it printed."""
        kubeconfig = (
            self.platform.kube.admin_kubeconfig
            if user == "admin"
            else self.platform.kubeconfigs[user]
        )
        command = [
            str(Path(sys.executable).parent / "kubectl-schedrollout"),
            "--kubeconfig", str(kubeconfig), "-n", plant.namespace, *argv,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return (done.stdout + done.stderr).strip()

    def sign_off_when_asked(self, plant: Plant, name: str) -> Callable[[Obj], None]:
        """At the sign-off step: mallory tries (refused by the API server), then alice signs as
        ops-manager and bob as plant-manager, each with their own credentials."""
        signed: list[str] = []

        def on_status(status: Obj) -> None:
            if status.get("phase") != "AwaitingApproval" or signed:
                return
            say("the decision checkpoint needs sign-offs by ops-manager and plant-manager")
            for user, role in (("mallory", "ops-manager"), ("alice", "ops-manager"),
                               ("bob", "plant-manager")):  # fmt: skip
                say(f"  {user}: kubectl schedrollout approve {name} --role {role}")
                say(f"    -> {self.schedrollout(user, plant, 'approve', name, '--role', role)}")
            signed.append(name)

        return on_status

    def run_rollout(
        self, plant: Plant, body: Obj, title: str, on_status: Callable[[Obj], None] | None = None
    ) -> Obj:
        name = body["metadata"]["name"]
        say(title)
        since = time.time()
        began = self.elapsed()
        plant.apply(body)
        status = self.watch(plant, name, on_status or (lambda _s: None))
        took = self.elapsed() - began
        say(f"{name}: {status['phase']} after {took:.0f}s - {status.get('message', '')}")
        print(plant.platform.kube.kubectl("get", "sro", "-n", plant.namespace), flush=True)
        summary = {
            "rollout": name,
            "phase": status["phase"],
            "message": status.get("message", ""),
            "rollbackReason": status.get("rollbackReason", ""),
            "seconds": round(took, 1),
            "clients": client_summary(plant.traffic.outcomes(since)),
            "mirrored": plant.shadow_answers(f"{max(1, round(took))}s"),
        }
        self.summaries.append(summary)
        return status

    # --- the demo ---------------------------------------------------------------------------------

    def run(self) -> None:
        url = self.platform.prometheus.url
        say("a plant namespace: the stable scheduler (legacy rule mwkr), its Service, its "
            "Gateway and GRPCRoute (Traefik), clients sending 6 calls/s through it")  # fmt: skip
        plant = self.platform.add_plant("plant")
        say(f"stable scheduler SERVING after {self.elapsed():.0f}s; starting rollout-operator")
        plant.start_operator()
        first = example_rollout(
            "scheduler-1-5-0", url, step_s=self.step_s, interval_s=self.interval_s,
            extra_env={"SCHEDULER_TIME_BUDGET_MS": str(DEMO_SEARCH_MS)}, gates=True,
        )  # fmt: skip
        self.run_rollout(
            plant, first,
            f"kubectl apply -f examples/rollout.yaml (PPO candidate searching {DEMO_SEARCH_MS} ms "
            f"per answer; verify Job first; steps of {self.step_s}s instead of days, analysis "
            f"every {self.interval_s}s, shadow copies by the stable pods, sequential shadow test)",
            self.sign_off_when_asked(plant, "scheduler-1-5-0"),
        )  # fmt: skip
        report = self.out / "rollout-report"
        say("kubectl schedrollout report scheduler-1-5-0 (Markdown + PNG from Prometheus)")
        wrote = self.schedrollout("admin", plant, "report", "scheduler-1-5-0", "--out", str(report))
        say(f"  -> {wrote}")
        longer = example_rollout(
            "scheduler-1-5-1", url, step_s=self.step_s, interval_s=self.interval_s,
            extra_env={"SCHEDULER_DEFAULT_POLICY": "edd"}, gates=True,
        )  # fmt: skip
        longer["spec"]["candidate"]["image"] = "registry.example/scheduler:1.5.1"
        self.run_rollout(
            plant, longer,
            "a rollout whose candidate plans by earliest due date (EDD: longer plans than the "
            "stable's): the verify Job's replay must catch it before any traffic reaches it",
        )  # fmt: skip
        slow = example_rollout(
            "scheduler-1-6-0", url, step_s=self.step_s, interval_s=self.interval_s,
            extra_env={"SCHEDULER_ENABLE_FAULTS": "1"},
        )  # fmt: skip
        slow["spec"]["candidate"] |= {
            "image": "registry.example/scheduler:1.6.0",
            "modelVersion": "2026.12.1",
        }
        plant.set_candidate_faults(latency_ms=FAULT_LATENCY_MS)
        self.run_rollout(
            plant, slow,
            f"a rollout without the verify step whose candidate adds "
            f"{FAULT_LATENCY_MS / 1000:.0f}s to every answer (rollback trigger: p95 latency above "
            "10s for 3 intervals)",
        )  # fmt: skip
        self.write_report()

    # --- the report -------------------------------------------------------------------------------

    def write_report(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "samples.json").write_text(
            json.dumps([asdict(s) for s in self.samples], indent=1)
        )
        plot(self.samples, self.out / "rollout.png")
        lines = [
            "# Rollout demo report",
            "",
            f"Total time: {self.elapsed():.0f} s. Command: `bash scripts/demo`.",
            "",
            "| rollout | result | seconds | client calls | failed | client completion "
            "| client p95 ms | shadow answers | reason |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in self.summaries:
            c = s["clients"]
            lines.append(
                f"| {s['rollout']} | {s['phase']} | {s['seconds']} | {c['calls']} | "
                f"{c['failed']} | {c['completion']:.4f} | {c['p95_ms']:.0f} | {s['mirrored']} | "
                f"{s['rollbackReason'] or s['message']} |"
            )
        lines += ["", "Client calls by track:", ""]
        for s in self.summaries:
            lines.append(f"- {s['rollout']}: {s['clients']['by_track']}")
        lines += ["", "![weight and metrics over time](rollout.png)", ""]
        (self.out / "report.md").write_text("\n".join(lines))
        say(f"report: {self.out / 'report.md'}, plot: {self.out / 'rollout.png'}")
        print("\n".join(lines[4:]), flush=True)


def client_summary(outcomes: list[Outcome]) -> Obj:
    """What the plant's clients saw: calls, failures, jobs placed over jobs asked, latency."""
    jobs = sum(o.jobs for o in outcomes)
    placed = sum(o.scheduled for o in outcomes)
    latencies = sorted(o.latency_s for o in outcomes if o.ok)
    by_track: dict[str, int] = {}
    for o in outcomes:
        by_track[o.track or o.code] = by_track.get(o.track or o.code, 0) + 1
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else 0.0
    return {
        "calls": len(outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "completion": placed / jobs if jobs else 1.0,
        "p95_ms": p95 * 1000,
        "by_track": by_track,
    }


def plot(samples: list[Sample], path: Path) -> None:
    """Weight and mirror, p95 latency and makespan vs legacy per track, over time."""
    import matplotlib  # noqa: PLC0415 - only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t = [s.t for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    axes[0].step(t, [s.weight for s in samples], where="post", label="candidate weight %")
    axes[0].step(t, [s.mirror for s in samples], where="post", label="mirrored %", ls="--")
    axes[0].set_ylabel("% of calls")
    for track, color in (("stable", "tab:blue"), ("shadow", "tab:gray"), ("canary", "tab:red")):
        p95 = [(s.tracks[track].p95_s or float("nan")) * 1000 for s in samples]
        ratio = [s.tracks[track].makespan_ratio or float("nan") for s in samples]
        axes[1].plot(t, p95, label=track, color=color)
        axes[2].plot(t, ratio, label=track, color=color)
    axes[1].set_ylabel("p95 latency (ms)")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("makespan / legacy")
    axes[2].set_xlabel("seconds since the demo started")
    previous = ""
    for s in samples:
        if s.rollout != previous:
            for ax in axes:
                ax.axvline(s.t, color="k", lw=0.8)
            axes[0].annotate(s.rollout, (s.t, 102), fontsize=8)
            previous = s.rollout
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("Staged rollouts: route weight and the metrics the operator judges by")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollout-demo",
        description="Three staged rollouts of the PPO scheduler on a local control plane: one "
        "verified, signed off by two roles and promoted (with its report), one rolled back by "
        "the verify step, one rolled back on latency. Loopback only; under 5 min.",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "out" / "demo",
        help="folder for report.md, samples.json and rollout.png (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", type=Path,
        help="where servers keep data and logs (default: a temporary folder, removed afterwards)",
    )  # fmt: skip
    parser.add_argument(
        "--step-seconds", type=int, default=10,
        help="each timed step of the plan, in place of days (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--interval-seconds", type=int, default=2,
        help="the operator's analysis interval (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--keep", action="store_true",
        help="keep the platform running at the end until Ctrl-C (to explore with kubectl)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.step_seconds < 1 or args.interval_seconds < 1:
        parser.error("--step-seconds and --interval-seconds must be at least 1")
    try:
        with contextlib.ExitStack() as stack:
            workdir = args.workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="rollout-demo-"))
            )
            say(
                "starting kube-apiserver + etcd, kube-controller-manager, kube-scheduler, a node "
                f"and Prometheus (work folder {workdir})"
            )
            platform = stack.enter_context(E2EPlatform(workdir))
            say(platform.describe())
            Demo(platform, args.out, args.step_seconds, args.interval_seconds).run()
            if args.keep:
                say(
                    "the platform lives in this process's network namespace; from another "
                    f"shell: nsenter --net=/proc/{os.getpid()}/ns/net kubectl "
                    f"--kubeconfig {platform.kube.admin_kubeconfig} get pods -A; "
                    "Ctrl-C stops the platform"
                )
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
    except (MissingBinaryError, NetworkNamespaceError) as exc:
        print(f"rollout-demo: {exc}", file=sys.stderr)
        return 2
    except ServerStartError as exc:
        print(f"rollout-demo: a server failed to start: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"rollout-demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
