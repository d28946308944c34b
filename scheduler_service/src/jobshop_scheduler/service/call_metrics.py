"""Counts every Schedule call by its final gRPC status, rejected ones included.

A servicer only sees the calls that got past authentication, but an error-rate rollback has to
see a candidate that rejects its clients too. So this interceptor sits outside the API-key
interceptor and wraps whatever handler comes back (the servicer's or the denial), reading the
status the call ended with from the context. Denied calls are counted but kept out of the
latency histogram: a flood of instant rejections would otherwise hide a slow scheduler.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc

from jobshop_scheduler.service.metrics import SchedulerMetrics

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor
    Handler = grpc.RpcMethodHandler
    Context = grpc.aio.ServicerContext

SCHEDULE_METHOD = "/scheduler.v1.Scheduler/Schedule"
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
Unary = Callable[[Any, Context], Awaitable[Any]]


def end_call(context: Context, code: grpc.StatusCode, details: str) -> None:
    """Ends the call with ``code`` once its handler returns; the handler returns None next.

    ``context.abort`` sends the status at once, before the handler and the interceptors around
    it have finished, so a client could see its error before the call was counted (a scrape
    right after it would miss the call). Set here, the status leaves after every record.
    """
    context.set_code(code)
    context.set_details(details)


def final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ends with: the one set or aborted with, else by how it ended."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        late = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if late else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN  # what grpc answers for an exception nobody handled


class CallMetricsInterceptor(_Interceptor):
    """Records the code (and, once authenticated, the latency) of unary calls to ``methods``."""

    def __init__(
        self, metrics: SchedulerMetrics, methods: Sequence[str] = (SCHEDULE_METHOD,)
    ) -> None:
        self._metrics = metrics
        self._methods = frozenset(methods)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler: Handler | None = await continuation(handler_call_details)
        if handler_call_details.method not in self._methods or handler is None:
            return cast(Handler, handler)
        behavior = handler.unary_unary
        if not inspect.iscoroutinefunction(behavior):
            return handler  # streaming or sync: not how the Scheduler service is served
        return grpc.unary_unary_rpc_method_handler(
            self._observe(behavior),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _observe(self, behavior: Unary) -> Unary:
        async def observed(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                code = final_code(context, error)
                elapsed = time.perf_counter() - started
                timed = code is not grpc.StatusCode.UNAUTHENTICATED
                self._metrics.record_call(code, elapsed if timed else None)

        return observed
