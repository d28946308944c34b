"""Turn a problem into a validated schedule with the requested policy.

One place decides PPO vs heuristic, measures the legacy baseline on the same request, spends the
request's time budget on the anytime search (`search.anytime`) and makes sure no invalid
schedule ever leaves: a PPO answer that fails the validator (or a policy that raises) is replaced
by the legacy rule's answer, with the reason recorded. Used by `schedctl schedule --local` and by
the gRPC server.

The budget covers the whole answer: the search stops early enough to leave time for validating
and converting its plan, and never runs past the client's deadline minus a safety margin. So does
the greedy pass itself, which on a request of a thousand jobs costs over a second: past its own
deadline the legacy rule places the operations it has left (`greedy_schedule`; SPT and MOR
also finish it where they fit, and the shortest is kept), early enough for
that and for the other baseline rules (`search.anytime`) to fit. The search's budget counts from
the call's arrival, so a call that waited for a planner thread searches less; the pass's counts
from when a planner thread takes the call (`taken`: converting and checking the request spend
it too), so waiting does not cost the plan itself, and only a request too large for the budget
(or the client's deadline) cuts it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobshop_scheduler.defaults import DEFAULT_BATCH_SIZE
from jobshop_scheduler.domain.codec import schedule_to_dict
from jobshop_scheduler.domain.model import Problem, Schedule
from jobshop_scheduler.domain.validator import (
    ScheduleInvalid,
    ValidationReport,
    unscheduled_jobs,
    validate,
)
from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import (
    BASELINE_RULES,
    LEGACY_RULE,
    RULES,
    dispatch_arrays,
    makespan_of,
)
from jobshop_scheduler.rl.fast_policy import greedy_schedule
from jobshop_scheduler.rl.model_store import LoadedModel
from jobshop_scheduler.search.anytime import improve, warm_up
from jobshop_scheduler.search.bounds import lower_bound

LEARNED = ("auto", "ppo")
POLICY_CHOICES = (*LEARNED, "heuristic", *RULES)
DEFAULT_POLICIES = ("ppo", *RULES)  # what "auto" means on a server
DEADLINE_MARGIN_S = 0.05  # left between the search's end and the client's deadline
# Kept back from the budget for what follows the search: validating and converting its plan.
# Per operation on 1000- and 2000-job production-like plans (2026-12-07): 1.3 us to a Schedule,
# 2.2-5 us to validate it, 1.7 us to the protobuf answer.
FINISH_RESERVE_S = 0.005
FINISH_RESERVE_PER_OP_S = 6e-6


@dataclass(frozen=True)
class SearchSummary:
    """What the anytime search did for an answer (all zero/"greedy" without a budget)."""

    stage: str = "greedy"
    lower_bound: int = 0
    greedy_makespan: int = 0
    iterations: int = 0
    time_budget_ms: int = 0
    # operations the rules placed because the greedy pass reached its deadline (0: the
    # pass placed every one)
    greedy_cut_operations: int = 0


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
    search: SearchSummary = field(default_factory=SearchSummary)

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
            "search_stage": self.search.stage,
            "lower_bound": self.search.lower_bound,
            "greedy_makespan": self.search.greedy_makespan,
            "search_iterations": self.search.iterations,
            "time_budget_ms": self.search.time_budget_ms,
            "greedy_cut_operations": self.search.greedy_cut_operations,
        }


class Planner:
    """Picks the policy, bounds the jobs it sees at once, validates, falls back; one per server."""

    def __init__(
        self,
        model: LoadedModel | None,
        legacy_rule: str = LEGACY_RULE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        default_policy: str = "ppo",
        time_budget_ms: int = 0,
    ) -> None:
        if legacy_rule not in RULES:
            raise ValueError(f"unknown legacy rule {legacy_rule!r}; valid: {', '.join(RULES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if default_policy not in DEFAULT_POLICIES:
            raise ValueError(
                f"unknown default policy {default_policy!r}; valid: {', '.join(DEFAULT_POLICIES)}"
            )
        if time_budget_ms < 0:
            raise ValueError(f"time_budget_ms must be >= 0, got {time_budget_ms}")
        self.model = model
        self.time_budget_ms = time_budget_ms  # for requests that do not say
        if time_budget_ms > 0:
            warm_up()  # so that the first request's budget is spent searching, not compiling
        self.legacy_rule = legacy_rule
        self.batch_size = batch_size
        # A deployment that still runs the legacy scheduler answers "auto" with its rule, so the
        # same service can be the stable track before the first PPO rollout.
        self.default_policy = default_policy

    @property
    def model_version(self) -> str:
        return self.model.card.version if self.model else ""

    def plan(
        self,
        problem: Problem,
        policy: str = "auto",
        time_budget_ms: int | None = None,
        *,
        deadline: float | None = None,
        iterations: int | None = None,
        seed: int = 0,
        received: float | None = None,
        taken: float | None = None,
    ) -> Plan:
        """Schedule `problem`; learned policies then search for `time_budget_ms`.

        `time_budget_ms` None takes the planner's default, 0 means no search: the greedy pass,
        or a baseline rule's plan where that is shorter (the search's portfolio alone);
        `deadline` (time.monotonic) is the client's; `received` (time.perf_counter), when the
        request arrived, from which the search's budget counts (default: now); `taken`
        (time.perf_counter), when a planner thread took the call, from which the greedy pass's
        budget counts (default: now), so that converting and checking the request spend it too;
        `iterations` replaces the clock with a fixed effort, for reproducible runs.
        """
        if policy not in POLICY_CHOICES:
            raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICY_CHOICES)}")
        if policy == "auto" and self.default_policy != "ppo":
            policy = self.default_policy
        if policy == "ppo" and self.model is None:
            raise PolicyUnavailable("policy 'ppo' requested but no model is loaded")
        budget_ms = self.time_budget_ms if time_budget_ms is None else time_budget_ms
        if budget_ms < 0:
            raise ValueError(f"time_budget_ms must be >= 0, got {budget_ms}")
        started = time.perf_counter()
        cp = compile_problem(problem)
        compiled = time.perf_counter()
        legacy = dispatch_arrays(cp, self.legacy_rule)
        baseline = makespan_of(cp, *legacy)
        chosen_at = time.perf_counter()
        # when the pass and the baseline rules must be done (None: no limit), and so when the
        # greedy pass must stop: room for the rule to place what it leaves and for the
        # portfolio's two other baseline rules, each about the cost of the one just run
        due = None if iterations else _pass_due(cp, taken or started, budget_ms, deadline)
        rule_seconds = chosen_at - compiled
        greedy_due = None if due is None else due - 3 * rule_seconds
        choice = self._choose(cp, policy, legacy, greedy_due, due)
        # what the search prices a policy rollout at: a whole pass, which a cut one was not
        greedy_seconds = float("inf") if choice.cut else time.perf_counter() - chosen_at
        summary = SearchSummary(greedy_makespan=choice.schedule.makespan)
        searching = policy in LEARNED and (budget_ms > 0 or iterations)
        if searching or choice.policy == "ppo":
            # at budget 0 the deadline has passed: of the search, only the portfolio's baseline
            # rules run (while the answer's time fits, if it has a limit), so the answer is the
            # greedy plan or a shorter rule's
            stop = _search_deadline(cp, received or started, budget_ms, deadline)
            choice, summary = self._search(
                cp, choice=choice, legacy=legacy, deadline=stop, iterations=iterations, seed=seed,
                greedy_seconds=greedy_seconds, budget_ms=budget_ms, rules_due=due,
                rule_seconds=rule_seconds,
            )  # fmt: skip
        if choice.cut:
            summary = dataclasses.replace(summary, greedy_cut_operations=choice.cut)
        schedule, used, kind, reason = choice.schedule, choice.policy, choice.kind, choice.reason
        report = validate(problem, schedule)
        if not report.ok and used == "ppo":
            kind, reason = (
                "invalid_schedule",
                f"ppo schedule failed validation: {report.violations[0]}",
            )
            schedule, used = cp.to_schedule(*legacy), self.legacy_rule
            summary = SearchSummary(time_budget_ms=summary.time_budget_ms)
            report = validate(problem, schedule)
        if not report.ok:
            raise ScheduleInvalid(report)  # a heuristic bug: never answer with it
        if summary.lower_bound == 0:
            summary = dataclasses.replace(summary, lower_bound=lower_bound(cp))
        latency = (time.perf_counter() - started) * 1000
        return Plan(
            problem, schedule, report, baseline, used, self.model_version, latency,
            reason, kind, choice.batches, summary,
        )  # fmt: skip

    def _search(
        self,
        cp: CompiledProblem,
        *,
        choice: _Choice,
        legacy: tuple[list[int], list[int]],
        deadline: float,
        iterations: int | None,
        seed: int,
        greedy_seconds: float,
        budget_ms: int,
        rules_due: float | None,
        rule_seconds: float,
    ) -> tuple[_Choice, SearchSummary]:
        """The anytime search from the chosen plan, the legacy rule's plan in its portfolio:
        the choice with the plan it found, if shorter, and what the search did."""
        greedy = choice.arrays if choice.arrays is not None else cp.arrays_of(choice.schedule)
        scorer = self.model.scorer if self.model is not None else None
        found = improve(
            cp, greedy, deadline=None if iterations else deadline, iterations=iterations,
            baselines={self.legacy_rule: (np.asarray(legacy[0]), np.asarray(legacy[1]))},
            scorer=scorer, seed=seed, greedy_seconds=greedy_seconds, horizon=self.horizon(cp),
            rules_due=rules_due, rule_seconds=rule_seconds,
        )  # fmt: skip
        if found.makespan < choice.schedule.makespan:
            choice = dataclasses.replace(
                choice, schedule=cp.to_schedule(found.op_machine, found.op_start)
            )
        summary = SearchSummary(
            found.stage, found.lower_bound, found.greedy_makespan, found.iterations, budget_ms
        )
        return choice, summary

    def _choose(
        self,
        cp: CompiledProblem,
        policy: str,
        legacy: tuple[list[int], list[int]],
        greedy_due: float | None = None,
        due: float | None = None,
    ) -> _Choice:
        """The schedule before validation, with the policy that made it and why; a greedy pass
        still running at `greedy_due` (time.perf_counter) is finished by the legacy rule, and
        by the other baseline rules while they fit before `due`."""
        if policy in LEARNED and self.model is not None:
            try:
                return self._ppo(cp, self.model, legacy, greedy_due, due)
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

    def _ppo(
        self,
        cp: CompiledProblem,
        model: LoadedModel,
        legacy: tuple[list[int], list[int]],
        due: float | None,
        finish_due: float | None = None,
    ) -> _Choice:
        """PPO greedy in one pass; on requests over `batch_size` jobs the policy sees that many
        at once, admitting the next as one finishes (`ShopState`), and the plan counts a batch
        per `batch_size` jobs. Past `due` the legacy rule places the rest: from the start, that
        is the legacy plan already made; the other baseline rules also finish it while they fit
        before `finish_due`, and the shortest is kept (`greedy_schedule`)."""
        batches = -(-cp.n_jobs // self.batch_size) if cp.n_jobs else 1
        if due is not None and time.perf_counter() >= due:
            arrays = (np.asarray(legacy[0], np.int64), np.asarray(legacy[1], np.int64))
            cut = cp.n_ops
        else:
            finish_rules = (self.legacy_rule, *(r for r in BASELINE_RULES if r != self.legacy_rule))
            state = greedy_schedule(
                cp, model.scorer, self.horizon(cp), deadline=due, finish_rules=finish_rules,
                finish_due=finish_due,
            )  # fmt: skip
            arrays, cut = (state.op_machine, state.op_start), state.rule_operations
        return _Choice(cp.to_schedule(*arrays), "ppo", batches=batches, arrays=arrays, cut=cut)

    def horizon(self, cp: CompiledProblem) -> int:
        """The jobs the policy sees at once on ``cp`` (0: every job)."""
        return self.batch_size if cp.n_jobs > self.batch_size else 0


@dataclass(frozen=True)
class _Choice:
    schedule: Schedule
    policy: str
    kind: str = ""
    reason: str = ""
    batches: int = 1
    # The plan as machine and start per operation, where the policy made it in that form (the
    # search starts from it; a rule's plan is converted back from its schedule instead).
    arrays: tuple[np.ndarray, np.ndarray] | None = None
    cut: int = 0  # operations the rules placed when the greedy pass ran out of time


def _pass_due(
    cp: CompiledProblem, started: float, budget_ms: int, deadline: float | None
) -> float | None:
    """When the greedy pass and the baseline rules must be done (time.perf_counter): the budget
    counted from `started`, when a planner thread took the call, and never past the client's
    deadline less the margin, each less the finishing reserve; None at budget 0 without a
    client deadline, where they take what they take."""
    limits = [started + budget_ms / 1000] if budget_ms > 0 else []
    if deadline is not None:
        limits.append(_client_due(deadline))
    return min(limits) - _reserve(cp) if limits else None


def _client_due(deadline: float) -> float:
    """The client's deadline (time.monotonic) on time.perf_counter, less the safety margin."""
    return time.perf_counter() + deadline - time.monotonic() - DEADLINE_MARGIN_S


def _reserve(cp: CompiledProblem) -> float:
    """Seconds kept back for validating and converting a plan of ``cp``."""
    return FINISH_RESERVE_S + FINISH_RESERVE_PER_OP_S * cp.n_ops


def _search_deadline(
    cp: CompiledProblem, started: float, budget_ms: int, deadline: float | None
) -> float:
    """When the search must stop (time.perf_counter): the budget less the finishing reserve,
    and never past the client's deadline less the safety margin."""
    stop = started + budget_ms / 1000
    if deadline is not None:
        stop = min(stop, _client_due(deadline))
    return stop - _reserve(cp)
