"""For the state machine tests: a short plan, reports built from values, a driver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollout_operator.actions import Action, EmitEvent, Notify, split
from rollout_operator.model import (
    AnalysisReport,
    Commands,
    Comparison,
    MetricResult,
    RolloutSpec,
    Rule,
    Verdict,
)
from rollout_operator.routers.base import NOT_REPORTED, RouteAcceptance
from rollout_operator.spec import parse_spec
from rollout_operator.state_machine import advance
from rollout_operator.status import RolloutStatus

T0 = 1_800_000_000.0
SHADOW_S, CANARY_S, FULL_S = 100.0, 100.0, 50.0
INTERVAL_S = 10.0


def make_spec(**analysis: Any) -> RolloutSpec:
    """Shadow (50 % mirrored) -> 10 % -> 50 % -> approval -> 100 %, short durations."""
    return parse_spec(
        {
            "targetRef": {"name": "scheduler"},
            "candidate": {"image": "registry.example/scheduler:1.5.0", "modelVersion": "m2"},
            "routing": {
                "provider": "gatewayAPI",
                "route": "scheduler",
                "stableService": "scheduler",
                "canaryService": "scheduler-canary",
            },
            "steps": [
                {"shadow": {"duration": "100s", "percent": 50}},
                {"weight": 10, "duration": "100s"},
                {"weight": 50, "duration": "100s"},
                {"approval": {}},
                {"weight": 100, "duration": "50s"},
            ],
            "analysis": {
                "interval": "10s",
                "rollback": [
                    {"name": "completion-rate", "below": 0.90, "for": 2},
                    {"name": "latency-p95-seconds", "above": 10, "for": 3},
                ],
                "warn": [
                    {"name": "latency-p95-seconds", "above": 5},
                    {"name": "memory-utilisation", "above": 0.90},
                ],
                "shadowCompare": {"maxMakespanRegression": 0.0},
                **analysis,
            },
            "webhook": {"url": "http://hooks.example/rollouts"},
        }
    )


SPEC = make_spec()
GOOD = {"completion-rate": 0.99, "latency-p95-seconds": 1.0, "memory-utilisation": 0.5}
SHADOW_NAME = "shadow-makespan-regression"


def result(rule: Rule, value: float | None, detail: str = "") -> MetricResult:
    if value is None:
        verdict = Verdict.NO_DATA
    elif rule.comparison is Comparison.BELOW:
        verdict = Verdict.BREACH if value < rule.threshold else Verdict.PASS
    else:
        verdict = Verdict.BREACH if value > rule.threshold else Verdict.PASS
    return MetricResult(rule.name, value, rule.threshold, rule.comparison, verdict, detail)


def report(
    time: float,
    spec: RolloutSpec = SPEC,
    shadow: float | None = -0.05,
    **values: float | None,
) -> AnalysisReport:
    """A round of ``spec``'s rules: GOOD values unless given (None: no data)."""
    merged: dict[str, float | None] = {
        **GOOD,
        **{k.replace("_", "-"): v for k, v in values.items()},
    }
    detail = "prometheus unreachable"
    compare = Rule(SHADOW_NAME, "", Comparison.ABOVE, 0.0)
    return AnalysisReport(
        time=time,
        rollback=tuple(
            result(r, merged.get(r.name), detail if merged.get(r.name) is None else "")
            for r in spec.analysis.rollback
        ),
        warn=tuple(result(r, merged.get(r.name)) for r in spec.analysis.warn),
        shadow_compare=result(compare, shadow),
    )


def no_data(time: float, spec: RolloutSpec = SPEC) -> AnalysisReport:
    names = {r.name.replace("-", "_"): None for r in (*spec.analysis.rollback, *spec.analysis.warn)}
    return report(time, spec, shadow=None, **names)


def events(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.type, a.reason) for a in actions if isinstance(a, EmitEvent)]


def effects(actions: list[Action]) -> list[Action]:
    return list(split(actions)[0])


def notifications(actions: list[Action]) -> list[str]:
    return [a.event for a in actions if isinstance(a, Notify)]


@dataclass
class Driver:
    """Calls advance like the handler would, keeping the status and every action."""

    spec: RolloutSpec = SPEC
    status: RolloutStatus = field(default_factory=RolloutStatus)
    now: float = T0
    history: list[list[Action]] = field(default_factory=list)
    route: RouteAcceptance = NOT_REPORTED  # what the router reports of the routing it wrote

    def tick(
        self,
        after: float = 0.0,
        report: AnalysisReport | None = None,
        commands: Commands = Commands(),  # noqa: B008
        *,
        available: bool = True,
        stable: bool = True,
    ) -> list[Action]:
        self.now += after
        self.status, actions = advance(
            self.spec,
            self.status,
            self.now,
            report,
            commands,
            candidate_available=available,
            stable_available=stable,
            route=self.route,
        )
        self.history.append(actions)
        return actions

    def analysed(self, after: float = INTERVAL_S, **values: float | None) -> list[Action]:
        """Time passes, then a round with these values (GOOD otherwise) is judged."""
        return self.tick(after, report(self.now + after, self.spec, **values))

    def finish_step(self, duration: float) -> list[Action]:
        """Good rounds every interval until the step is over; the last call's actions."""
        started = self.status.step
        phase = self.status.phase
        actions: list[Action] = []
        for _ in range(int(duration // INTERVAL_S) + 1):
            actions = self.analysed()
            if (self.status.step, self.status.phase) != (started, phase):
                return actions
        raise AssertionError(f"step {started} did not finish: {self.status.message}")
