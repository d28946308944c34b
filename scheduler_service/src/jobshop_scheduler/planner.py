"""Turn a problem into a validated schedule with the requested policy.

One place decides PPO vs heuristic, measures the legacy baseline on the same request, and makes
sure no invalid schedule ever leaves: a PPO answer that fails the validator (or a policy that
raises) is replaced by the legacy rule's answer, with the reason recorded. Used by
`schedctl schedule --local` and by the gRPC server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jobshop_scheduler.domain.codec import schedule_to_dict
from jobshop_scheduler.domain.model import Problem, Schedule
from jobshop_scheduler.domain.validator import (
    ScheduleInvalid,
    ValidationReport,
    unscheduled_jobs,
    validate,
)
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE, RULES, dispatch_arrays, makespan_of
from jobshop_scheduler.rl.fast_policy import greedy_schedule
from jobshop_scheduler.rl.model_store import LoadedModel

LEARNED = ("auto", "ppo")
POLICY_CHOICES = (*LEARNED, "heuristic", *RULES)


class PolicyUnavailable(RuntimeError):
    """`ppo` was asked for explicitly but no model is loaded."""


@dataclass(frozen=True)
class Plan:
    problem: Problem
    schedule: Schedule
    report: ValidationReport
    baseline_makespan: int
    policy_used: str
    model_version: str
    latency_ms: float
    fallback_reason: str = ""

    def response(self) -> dict[str, Any]:
        """The response JSON of docs/request-format.md."""
        return {
            "request_id": self.problem.request_id,
            **schedule_to_dict(self.schedule),
            "baseline_makespan": self.baseline_makespan,
            "completion_rate": self.report.completion_rate,
            "unscheduled": [
                {"job_id": job, "reason": reason}
                for job, reason in unscheduled_jobs(self.problem, self.report)
            ],
            "model_version": self.model_version,
            "latency_ms": round(self.latency_ms, 3),
            "policy_used": self.policy_used,
        }


class Planner:
    def __init__(self, model: LoadedModel | None, legacy_rule: str = LEGACY_RULE) -> None:
        if legacy_rule not in RULES:
            raise ValueError(f"unknown legacy rule {legacy_rule!r}; valid: {', '.join(RULES)}")
        self.model = model
        self.legacy_rule = legacy_rule

    @property
    def model_version(self) -> str:
        return self.model.card.version if self.model else ""

    def plan(self, problem: Problem, policy: str = "auto") -> Plan:
        if policy not in POLICY_CHOICES:
            raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICY_CHOICES)}")
        if policy == "ppo" and self.model is None:
            raise PolicyUnavailable("policy 'ppo' requested but no model is loaded")
        started = time.perf_counter()
        cp = compile_problem(problem)
        legacy = dispatch_arrays(cp, self.legacy_rule)
        baseline = makespan_of(cp, *legacy)
        schedule, used, reason = self._choose(cp, policy, legacy)
        report = validate(problem, schedule)
        if not report.ok and used == "ppo":
            reason = f"ppo schedule failed validation: {report.violations[0]}"
            schedule, used = cp.to_schedule(*legacy), self.legacy_rule
            report = validate(problem, schedule)
        if not report.ok:
            raise ScheduleInvalid(report)  # a heuristic bug: never answer with it
        latency = (time.perf_counter() - started) * 1000
        return Plan(problem, schedule, report, baseline, used, self.model_version, latency, reason)

    def _choose(
        self, cp: CompiledProblem, policy: str, legacy: tuple[list[int], list[int]]
    ) -> tuple[Schedule, str, str]:
        """(schedule, policy used, fallback reason) before validation."""
        if policy in LEARNED and self.model is not None:
            try:
                state = greedy_schedule(cp, self.model.scorer)
                return cp.to_schedule(state.op_machine, state.op_start), "ppo", ""
            except Exception as exc:  # the fallback exists for exactly this
                return cp.to_schedule(*legacy), self.legacy_rule, f"policy error: {exc!r}"
        if policy in LEARNED:
            return cp.to_schedule(*legacy), self.legacy_rule, "no model loaded"
        rule = self.legacy_rule if policy == "heuristic" else policy
        arrays = legacy if rule == self.legacy_rule else dispatch_arrays(cp, rule)
        return cp.to_schedule(*arrays), rule, ""
