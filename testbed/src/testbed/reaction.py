"""`rollout-reaction-bench`: how fast a breach turns into 100% stable routing.

Each run applies a rollout at 10% (the example's rollback rules, analysis every
``--interval-seconds``), waits a random time, then makes the candidate drop every job. Measured:

- **breach**: the first moment the operator's completion-rate query, evaluated by Prometheus at
  scrape resolution, is below the rule's threshold: the earliest any evaluator could know;
- **restored**: when the API server announced the GRPCRoute with the candidate at weight 0
  (a watch on the route, so no polling delay is added).

The reaction time is restored - breach. The rule rolls back after ``for`` = 2 consecutive
breached rounds, so it is bounded below by one interval and above by two, plus the operator's
query and write. The table gives every run, then min/median/max against the interval.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_operator.analysis.queries import render
from rollout_operator.model import Comparison, Rule
from testbed import MissingBinaryError, ServerStartError
from testbed.e2e import E2EPlatform, Plant, example_rollout
from testbed.recorder import Recorder
from testbed.traffic import GRPCROUTE, RouteView

THRESHOLD = 0.90  # examples/rollout.yaml: completion-rate below 0.90 for 2 intervals
BUDGET_S = 5.0  # the acceptance bound: median <= interval + 5 s

Obj = dict[str, Any]


@dataclass(frozen=True)
class Run:
    index: int
    fault_at: float  # epoch seconds
    breach_at: float
    restored_at: float

    @property
    def reaction_s(self) -> float:
        return self.restored_at - self.breach_at


def first_breach(plant: Plant, interval_s: float, start: float, end: float) -> float:
    """The first evaluation time in [start, end] (0.25 s steps) where completion < threshold."""
    rule = Rule("completion-rate", "", Comparison.BELOW, THRESHOLD)
    query = render(rule, "canary", plant.namespace, "", interval_s)
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "0.25"}
    )
    url = f"{plant.platform.prometheus.url}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=30) as reply:
        body = json.load(reply)
    for series in body["data"]["result"]:
        for stamp, value in series["values"]:
            if float(value) < THRESHOLD:
                return float(stamp)
    raise RuntimeError(f"Prometheus shows no breach between {start:.1f} and {end:.1f}")


def restored_after(recorder: Recorder, since: float) -> float:
    weights = [(s.at, RouteView.of(s.obj).weight_of("scheduler-canary")) for s in recorder.seen]
    for at, weight in weights:
        if at >= since and weight == 0:
            return at
    recent = [(round(at - since, 2), weight) for at, weight in weights if at >= since - 30]
    raise RuntimeError(
        f"the route never went back to 100% stable; (s from the fault, weight): {recent}"
    )


def one_run(plant: Plant, index: int, interval_s: int, rng: random.Random) -> Run:
    name = f"reaction-{index}"
    body = example_rollout(
        name, plant.platform.prometheus.url, interval_s=interval_s,
        extra_env={"SCHEDULER_ENABLE_FAULTS": "1"},
    )  # fmt: skip
    body["spec"]["steps"] = [{"weight": 10, "duration": "1h"}]
    plant.apply(body)
    plant.wait_for(
        name,
        lambda s: s.get("phase") == "Canary" and plant.route().weight_of("scheduler-canary") == 10,
        240,
        "10% in the route",
    )
    time.sleep(rng.uniform(interval_s, 3 * interval_s))  # healthy data, then a random moment
    fault_at = time.time()
    plant.set_candidate_faults(drop_job_fraction=1.0)
    status = plant.wait_phase(name, "RolledBack", 20 * interval_s + 60)
    if not status.get("rollbackReason", "").startswith("completion-rate"):
        raise RuntimeError(f"{name} rolled back for another reason: {status['rollbackReason']}")
    time.sleep(1.0)  # let the watch deliver the route change
    return Run(index, fault_at, 0.0, 0.0)


def measure(plant: Plant, recorder: Recorder, run: Run, interval_s: int) -> Run:
    restored = restored_after(recorder, run.fault_at)
    breach = first_breach(plant, interval_s, run.fault_at - 1.0, restored)
    return Run(run.index, run.fault_at, breach, restored)


def report(runs: list[Run], interval_s: int) -> bool:
    print(f"\n{'run':>3}  {'breach after fault (s)':>22}  {'reaction (s)':>12}  {'intervals':>9}")
    for r in runs:
        print(
            f"{r.index:>3}  {r.breach_at - r.fault_at:>22.2f}  {r.reaction_s:>12.2f}  "
            f"{r.reaction_s / interval_s:>9.2f}"
        )
    times = [r.reaction_s for r in runs]
    median = statistics.median(times)
    bound = interval_s + BUDGET_S
    verdict = "PASS" if median <= bound else "FAIL"
    print(
        f"\nreaction time over {len(runs)} runs: min {min(times):.2f} s, median {median:.2f} s, "
        f"max {max(times):.2f} s; analysis interval {interval_s} s; "
        f"bound (interval + {BUDGET_S:.0f} s) {bound:.0f} s: {verdict}"
    )
    return median <= bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollout-reaction-bench",
        description="Time from the first scrape that shows a completion-rate breach to the "
        "GRPCRoute at 100 % stable, over several rollouts on the local e2e platform.",
    )
    parser.add_argument("--runs", type=int, default=10, help="rollouts (default: %(default)s)")
    parser.add_argument(
        "--interval-seconds", type=int, default=5,
        help="the operator's analysis interval (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="random fault times (default: 1)")
    parser.add_argument("--workdir", type=Path, help="server data and logs (default: temporary)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.interval_seconds < 1:
        parser.error("--runs and --interval-seconds must be at least 1")
    rng = random.Random(args.seed)
    try:
        with ExitStack() as stack:
            workdir = args.workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="reaction-"))
            )
            platform = stack.enter_context(E2EPlatform(workdir))
            runs = []
            for index in range(1, args.runs + 1):
                # A plant of its own per run: the previous candidate's series stay in the
                # analysis window for a while and would be judged with the next one.
                plant = platform.add_plant(f"reaction-{index}", seed=index)
                plant.start_operator()
                recorder = Recorder(
                    platform.custom.list_namespaced_custom_object,
                    *GRPCROUTE[:2], plant.namespace, GRPCROUTE[2],
                ).start()  # fmt: skip
                try:
                    run = one_run(plant, index, args.interval_seconds, rng)
                    run = measure(plant, recorder, run, args.interval_seconds)
                finally:
                    recorder.stop()
                    platform.remove_plant(plant)
                runs.append(run)
                print(f"run {index}/{args.runs}: reaction {run.reaction_s:.2f} s", flush=True)
            ok = report(runs, args.interval_seconds)
    except (MissingBinaryError, ServerStartError, RuntimeError, TimeoutError) as exc:
        print(f"rollout-reaction-bench: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
