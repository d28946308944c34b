"""The Schedule RPC: check the request, plan it off the event loop, answer, account for it.

Order matters. A request is refused as early as possible and with the most precise status: not
ready (UNAVAILABLE), malformed (INVALID_ARGUMENT, naming every bad field by its path), already
past its deadline (DEADLINE_EXCEEDED, without spending CPU on it). Planning is CPU-bound, so it
runs in a thread pool; the event loop keeps answering health checks and other calls. Whatever
happens, the call leaves one audit line and one log line, and an unexpected error reaches the
client as a generic INTERNAL while its traceback stays in the server log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from jobshop_scheduler.api import SCHEDULER_SERVICE, pb, pb_grpc
from jobshop_scheduler.defaults import DEFAULT_TIME_BUDGET_MS, MAX_TIME_BUDGET_MS
from jobshop_scheduler.domain.model import Schedule
from jobshop_scheduler.domain.validator import (
    ProblemError,
    ScheduleInvalid,
    SizeLimits,
    unscheduled_jobs,
    validate,
    validate_problem,
)
from jobshop_scheduler.planner import Plan, Planner
from jobshop_scheduler.rl.model_store import LoadedModel
from jobshop_scheduler.service.audit import AuditTrail
from jobshop_scheduler.service.auth import API_KEY_HEADER, CLIENT_KEY_ID
from jobshop_scheduler.service.call_metrics import end_call
from jobshop_scheduler.service.convert import (
    UnknownPolicy,
    plan_to_pb,
    policy_from_pb,
    problem_from_pb,
    time_budget_from_pb,
)
from jobshop_scheduler.service.faults import (
    FaultConfig,
    FaultInjector,
    pick_dropped_jobs,
    should_fail,
)
from jobshop_scheduler.service.metrics import SchedulerMetrics
from jobshop_scheduler.service.mirror import MIRRORED_FROM_HEADER, Mirror

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[pb.ScheduleRequest, pb.ScheduleResponse]
else:
    Context = grpc.aio.ServicerContext

log = logging.getLogger(__name__)

INTERNAL_DETAILS = "internal error while scheduling; the server log has the details"
MAX_SHOWN_ERRORS = 20
MAX_ERROR_CHARS = 300
MAX_DETAILS_CHARS = 4000  # grpc carries details in a header: keep well under its size limit
# Every answer (and refusal) says which track served it, so a client behind a gateway, or an
# engineer with grpcurl, can tell the candidate's answers from the stable's during a canary.
TRACK_HEADER = "x-scheduler-track"


class Refusal(Exception):
    """A call answered with a non-OK status the client can act on."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Undecodable:
    """A Schedule payload that is not a ScheduleRequest: refused like any other bad field.

    grpc's own handling of a deserializer that raises answers UNKNOWN with the exception's
    class in the details, before any interceptor or audit sees the call; any key holder could
    fill the log with tracebacks that way."""

    size: int

    @property
    def details(self) -> str:
        message = pb.ScheduleRequest.DESCRIPTOR.full_name
        return f"request: {self.size} bytes that do not decode as a {message}"


def decode_request(payload: bytes) -> pb.ScheduleRequest | Undecodable:
    """The Schedule RPC's request deserializer (``server.add_scheduler``)."""
    try:
        return pb.ScheduleRequest.FromString(payload)
    except DecodeError:
        return Undecodable(len(payload))


def add_scheduler(servicer: SchedulerServicer, server: grpc.aio.Server) -> None:
    """Register Schedule as the generated code would, with `decode_request` as deserializer."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.Schedule,
        request_deserializer=decode_request,
        response_serializer=pb.ScheduleResponse.SerializeToString,
    )
    service = grpc.method_handlers_generic_handler(SCHEDULER_SERVICE, {"Schedule": handler})
    server.add_generic_rpc_handlers((service,))


class _TooLate(Exception):
    """The deadline passed while the request waited for a planner thread."""


def invalid_details(errors: list[ProblemError]) -> str:
    """INVALID_ARGUMENT details: each error as ``field.path[i]: message``, bounded in size."""
    shown = [str(e)[:MAX_ERROR_CHARS] for e in errors[:MAX_SHOWN_ERRORS]]
    more = len(errors) - len(shown)
    text = "invalid request: " + "; ".join(shown) + (f"; ... and {more} more" if more else "")
    return text[:MAX_DETAILS_CHARS]


def drop_jobs(plan: Plan, fraction: float, seed: str) -> Plan:
    """``plan`` with a fault's share of jobs removed from the answer, re-validated."""
    dropped = pick_dropped_jobs([job.id for job in plan.problem.jobs], fraction, seed)
    if not dropped:
        return plan
    kept = tuple(a for a in plan.schedule.assignments if a.job_id not in dropped)
    schedule = Schedule(kept)
    return dataclasses.replace(plan, schedule=schedule, report=validate(plan.problem, schedule))


def _plan_unless_late(planner: Planner, call: _Call, fail: bool) -> Plan:
    """In a planner thread: the request converted, checked and planned. Converting costs about
    2.5 µs an operation (75 ms for 2000 production-like jobs), which the event loop would spend
    while every other call and the health checks wait (their median wait under such requests
    went from 20-66 to 12-17 ms); the sizes were checked there, from the message."""
    taken = time.perf_counter()
    if call.deadline is not None and time.monotonic() >= call.deadline:
        raise _TooLate  # do not start work nobody will receive
    problem = problem_from_pb(call.request)
    errors = validate_problem(problem)
    if errors:
        call.jobs_requested = 0  # a client mistake, not a request the service failed
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, invalid_details(errors))
    if fail:
        raise Refusal(grpc.StatusCode.INTERNAL, "injected fault (test fault injection is on)")
    policy, budget_ms = call.policy, call.budget_ms
    # The search's budget counts from the call's arrival: time queued for a planner thread is
    # spent; the greedy pass's from `taken`, with the conversion and checks above in it
    # (`planner` module docstring).
    return planner.plan(
        problem, policy, budget_ms, deadline=call.deadline, received=call.received, taken=taken
    )


def check_time_budget(budget_ms: int | None, limit_ms: int) -> list[ProblemError]:
    """The request's time_budget_ms against what this server allows (None: the default)."""
    if budget_ms is None:
        return []
    if budget_ms < 0:
        return [ProblemError("time_budget_ms", f"must be >= 0 (0: greedy only), got {budget_ms}")]
    if budget_ms > limit_ms:
        message = f"{budget_ms} is over this server's limit of {limit_ms} ms"
        return [ProblemError("time_budget_ms", message)]
    return []


def deadline_of(context: Any) -> float | None:
    """The call's deadline on the monotonic clock; None when the client set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


@dataclass
class _Call:
    """What one call's audit and log lines need, filled in as it proceeds."""

    request: pb.ScheduleRequest
    client: str
    received: float = 0.0  # time.perf_counter() at arrival
    deadline: float | None = None  # the client's, on time.monotonic()
    policy: str = ""
    budget_ms: int | None = None
    jobs_requested: int = 0  # set once the request is valid
    plan: Plan | None = None


class SchedulerServicer(pb_grpc.SchedulerServicer):
    """Serves Schedule once ``use_model`` was called (the readiness gate does that)."""

    def __init__(
        self,
        *,
        track: str,
        metrics: SchedulerMetrics,
        executor: Executor,
        limits: SizeLimits,
        legacy_rule: str,
        batch_size: int,
        default_policy: str = "ppo",
        audit: AuditTrail | None = None,
        mirror: Mirror | None = None,
        faults: FaultInjector | None = None,
        time_budget_ms: int = DEFAULT_TIME_BUDGET_MS,
        max_time_budget_ms: int = MAX_TIME_BUDGET_MS,
    ) -> None:
        self.track = track
        self.metrics = metrics
        self.executor = executor
        self.limits = limits
        self.legacy_rule = legacy_rule
        self.batch_size = batch_size
        self.default_policy = default_policy
        self.audit = audit
        self.mirror = mirror
        self.faults = faults
        self.time_budget_ms = time_budget_ms
        self.max_time_budget_ms = max_time_budget_ms
        self.planner: Planner | None = None

    def use_model(self, model: LoadedModel) -> None:
        self.planner = Planner(
            model, self.legacy_rule, self.batch_size, self.default_policy, self.time_budget_ms
        )
        self.metrics.set_model(model.card.version, model.card.sha256)

    async def Schedule(
        self, payload: pb.ScheduleRequest | Undecodable, context: Context
    ) -> pb.ScheduleResponse | None:
        started = time.perf_counter()
        await context.send_initial_metadata(((TRACK_HEADER, self.track),))
        undecodable = payload if isinstance(payload, Undecodable) else None
        request = payload if isinstance(payload, pb.ScheduleRequest) else pb.ScheduleRequest()
        call = _Call(request, CLIENT_KEY_ID.get(), started, deadline_of(context))
        try:
            if undecodable is not None:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, undecodable.details)
            plan = await self._answer(call)
        except Refusal as refusal:
            self._finish(call, started, refusal.code, refusal.details)
            end_call(context, refusal.code, refusal.details)
            return None
        except asyncio.CancelledError:  # grpc cancels the handler at the client's deadline
            remaining = context.time_remaining()
            late = remaining is not None and remaining <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if late else grpc.StatusCode.CANCELLED
            self._finish(call, started, code, "call ended by the client or its deadline")
            raise
        except Exception as exc:
            log.exception(
                "Schedule failed", extra={"fields": {"request_id": request.request_id[:200]}}
            )
            self._finish(call, started, grpc.StatusCode.INTERNAL, type(exc).__name__)
            end_call(context, grpc.StatusCode.INTERNAL, INTERNAL_DETAILS)
            return None
        latency_ms = (time.perf_counter() - started) * 1000
        response = plan_to_pb(plan, latency_ms)
        self._finish(call, started, grpc.StatusCode.OK)
        if self.mirror is not None and not _was_mirrored(context):
            # O(1), never blocks: the shadow is fed after we answer, and its answer is paired
            # with ours. Refused or failed calls never get here: nothing to mirror or pair.
            self.mirror.offer(request, _api_key(context), response)
        return response

    async def _answer(self, call: _Call) -> Plan:
        planner = self.planner
        if planner is None:
            raise Refusal(
                grpc.StatusCode.UNAVAILABLE,
                "the scheduler is not ready: its model has not passed the start-up checks",
            )
        try:
            call.policy = policy_from_pb(call.request.policy)
        except UnknownPolicy as exc:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, invalid_details([exc.error])) from None
        request = call.request
        call.budget_ms = time_budget_from_pb(request)
        errors = check_time_budget(call.budget_ms, self.max_time_budget_ms)
        errors += self.limits.errors(
            len(request.jobs),
            lambda: sum(len(job.operations) for job in request.jobs),
            len(request.machines),
        )
        if errors:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, invalid_details(errors))
        # A valid request's jobs count as requested when its call ends, and as scheduled if it
        # ended with an answer: server errors and blown deadlines lower the completion rate,
        # client mistakes don't (the planner thread takes them back when the request fails
        # its checks there), and calls still in flight (a slow answer) don't count yet.
        call.jobs_requested = len(request.jobs)
        faults = self.faults.current() if self.faults is not None else None
        seed = request.request_id or uuid.uuid4().hex
        fail = faults is not None and should_fail(seed, faults.error_rate)
        plan = await self._plan(planner, call, fail)
        if not plan.report.ok:  # the planner guarantees this; an invalid plan never leaves
            raise ScheduleInvalid(plan.report)
        if faults is not None:
            plan = await _inject(plan, faults, seed)
        call.plan = plan
        return plan

    async def _plan(self, planner: Planner, call: _Call, fail: bool) -> Plan:
        deadline = call.deadline
        late = Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the answer")
        if deadline is not None and deadline - time.monotonic() <= 0:
            raise late
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.executor, _plan_unless_late, planner, call, fail)
        try:
            if deadline is None:
                return await work
            return await asyncio.wait_for(work, timeout=max(deadline - time.monotonic(), 0.0))
        except (TimeoutError, _TooLate):
            raise late from None

    def _measure(self, plan: Plan) -> None:
        scheduled = len(plan.problem.jobs) - len(unscheduled_jobs(plan.problem, plan.report))
        self.metrics.record_answer(
            scheduled,
            plan.schedule.makespan,
            plan.baseline_makespan,
            plan.batches,
            len(plan.problem.machines),
        )
        self.metrics.record_fallback(plan.fallback_kind)
        if plan.search.greedy_cut_operations:
            self.metrics.record_greedy_cut()
        if plan.search.time_budget_ms > 0:
            self.metrics.record_search(
                plan.search.stage, plan.schedule.makespan, plan.search.greedy_makespan
            )

    def _finish(self, call: _Call, started: float, code: grpc.StatusCode, detail: str = "") -> None:
        """The call's completion metrics, audit line and log line."""
        latency_ms = (time.perf_counter() - started) * 1000
        plan, request = call.plan, call.request
        if call.jobs_requested:
            self.metrics.record_requested(call.jobs_requested)
            if plan is not None and code is grpc.StatusCode.OK:
                self._measure(plan)
        policy = plan.policy_used if plan is not None else call.policy
        model_version = plan.model_version if plan is not None else ""
        makespan = plan.schedule.makespan if plan is not None else None
        baseline = plan.baseline_makespan if plan is not None else None
        if self.audit is not None:
            self.audit.record(
                request_id=request.request_id, client=call.client, track=self.track,
                jobs=len(request.jobs), policy=policy, model_version=model_version,
                makespan=makespan, baseline_makespan=baseline, latency_ms=latency_ms,
                status=code, detail=detail,
            )  # fmt: skip
        fields: dict[str, Any] = {
            "request_id": request.request_id[:200], "client": call.client, "track": self.track,
            "shadow": self.track == "shadow", "code": code.name, "jobs": len(request.jobs),
            "policy": policy, "makespan": makespan, "baseline_makespan": baseline,
            "latency_ms": round(latency_ms, 3),
        }  # fmt: skip
        if plan is not None:
            fields.update(
                search_stage=plan.search.stage,
                greedy_makespan=plan.search.greedy_makespan,
                greedy_cut_operations=plan.search.greedy_cut_operations,
                batches=plan.batches,
                fallback=plan.fallback_kind,
                completion_rate=plan.report.completion_rate,
            )
        if detail:
            fields["detail"] = detail[:MAX_ERROR_CHARS]
        if code is not grpc.StatusCode.OK:
            log.info("schedule refused", extra={"fields": fields})
        else:
            log.info(
                "shadow answer" if fields["shadow"] else "schedule answered",
                extra={"fields": fields},
            )


async def _inject(plan: Plan, faults: FaultConfig, seed: str) -> Plan:
    """Test faults: a slower answer, jobs missing from it."""
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.drop_job_fraction:
        plan = drop_jobs(plan, faults.drop_job_fraction, seed)
    return plan


def _api_key(context: Any) -> str | None:
    """The caller's API key, which the mirror sends on with the copy."""
    for key, value in context.invocation_metadata() or ():
        if key == API_KEY_HEADER:
            return str(value)
    return None


def _was_mirrored(context: Any) -> bool:
    """Calls that are themselves mirror copies are never mirrored on (no loops)."""
    return any(key == MIRRORED_FROM_HEADER for key, _ in context.invocation_metadata() or ())
