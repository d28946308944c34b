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
from jobshop_scheduler.domain.model import Assignment, Problem, Schedule
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
DEFAULT_POLICIES = ("ppo", *RULES)  # what "auto" means on a server
DEFAULT_BATCH_SIZE = 170  # jobs per PPO pass; the size the policy is benchmarked at


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
    fallback_kind: str = ""  # "", "no_model", "policy_error" or "invalid_schedule" (a metric label)
    batches: int = 1

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
    """Picks the policy, batches large requests, validates, falls back; one per server."""

    def __init__(
        self,
        model: LoadedModel | None,
        legacy_rule: str = LEGACY_RULE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        default_policy: str = "ppo",
    ) -> None:
        if legacy_rule not in RULES:
            raise ValueError(f"unknown legacy rule {legacy_rule!r}; valid: {', '.join(RULES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if default_policy not in DEFAULT_POLICIES:
            raise ValueError(
                f"unknown default policy {default_policy!r}; valid: {', '.join(DEFAULT_POLICIES)}"
            )
        self.model = model
        self.legacy_rule = legacy_rule
        self.batch_size = batch_size
        # A deployment that still runs the legacy scheduler answers "auto" with its rule, so the
        # same service can be the stable track before the first PPO rollout.
        self.default_policy = default_policy

    @property
    def model_version(self) -> str:
        return self.model.card.version if self.model else ""

    def plan(self, problem: Problem, policy: str = "auto") -> Plan:
        if policy not in POLICY_CHOICES:
            raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICY_CHOICES)}")
        if policy == "auto" and self.default_policy != "ppo":
            policy = self.default_policy
        if policy == "ppo" and self.model is None:
            raise PolicyUnavailable("policy 'ppo' requested but no model is loaded")
        started = time.perf_counter()
        cp = compile_problem(problem)
        legacy = dispatch_arrays(cp, self.legacy_rule)
        baseline = makespan_of(cp, *legacy)
        choice = self._choose(problem, cp, policy, legacy)
        schedule, used, kind, reason = choice.schedule, choice.policy, choice.kind, choice.reason
        report = validate(problem, schedule)
        if not report.ok and used == "ppo":
            kind, reason = (
                "invalid_schedule",
                f"ppo schedule failed validation: {report.violations[0]}",
            )
            schedule, used = cp.to_schedule(*legacy), self.legacy_rule
            report = validate(problem, schedule)
        if not report.ok:
            raise ScheduleInvalid(report)  # a heuristic bug: never answer with it
        latency = (time.perf_counter() - started) * 1000
        return Plan(
            problem, schedule, report, baseline, used, self.model_version, latency,
            reason, kind, choice.batches,
        )  # fmt: skip

    def _choose(
        self,
        problem: Problem,
        cp: CompiledProblem,
        policy: str,
        legacy: tuple[list[int], list[int]],
    ) -> _Choice:
        """The schedule before validation, with the policy that made it and why."""
        if policy in LEARNED and self.model is not None:
            try:
                return self._ppo(problem, cp, self.model)
            except Exception as exc:  # the fallback exists for exactly this
                return _Choice(
                    cp.to_schedule(*legacy),
                    self.legacy_rule,
                    "policy_error",
                    f"policy error: {exc!r}",
                )
        if policy in LEARNED:
            return _Choice(cp.to_schedule(*legacy), self.legacy_rule, "no_model", "no model loaded")
        rule = self.legacy_rule if policy == "heuristic" else policy
        arrays = legacy if rule == self.legacy_rule else dispatch_arrays(cp, rule)
        return _Choice(cp.to_schedule(*arrays), rule)

    def _ppo(self, problem: Problem, cp: CompiledProblem, model: LoadedModel) -> _Choice:
        """PPO greedy; requests over `batch_size` jobs go batch after batch on shared machines."""
        if cp.n_jobs <= self.batch_size:
            state = greedy_schedule(cp, model.scorer)
            return _Choice(cp.to_schedule(state.op_machine, state.op_start), "ppo")
        ready: dict[str, int] = {}
        assignments: list[Assignment] = []
        batches = split_batches(problem, self.batch_size)
        for batch in batches:
            part = compile_problem(batch, machine_ready=ready)
            state = greedy_schedule(part, model.scorer)
            for a in part.to_schedule(state.op_machine, state.op_start).assignments:
                assignments.append(a)
                ready[a.machine_id] = max(ready.get(a.machine_id, 0), a.end)
        return _Choice(Schedule(tuple(assignments)), "ppo", batches=len(batches))


@dataclass(frozen=True)
class _Choice:
    schedule: Schedule
    policy: str
    kind: str = ""
    reason: str = ""
    batches: int = 1


def split_batches(problem: Problem, batch_size: int) -> list[Problem]:
    """Jobs in order of release, then due date, then request order, cut into batches.

    Earlier work goes first, so a later batch only ever waits on machines, never on jobs.
    """
    order = sorted(
        range(len(problem.jobs)),
        key=lambda i: (
            problem.jobs[i].release_time,
            problem.jobs[i].due_date if problem.jobs[i].due_date is not None else float("inf"),
            i,
        ),
    )
    jobs = [problem.jobs[i] for i in order]
    return [
        Problem(problem.machines, tuple(jobs[k : k + batch_size]), problem.request_id)
        for k in range(0, len(jobs), batch_size)
    ]
