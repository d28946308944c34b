"""API-key authentication for the grpc.aio server, as a server interceptor.

The key comes in metadata ``x-api-key: <key>`` or ``authorization: Bearer <key>``. Health checks
and reflection are exempt so kubelet probes and grpcurl discovery need no secret. The
authenticated key id reaches the servicer through the ``CLIENT_KEY_ID`` context variable (for the
audit trail and per-client metrics); the key itself goes no further than this module.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

import grpc

from jobshop_scheduler.service.call_metrics import end_call
from jobshop_scheduler.service.keys import KeyFileError, KeyStore

if TYPE_CHECKING:  # the stubs make these generic; at run time they are plain classes
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor
    Handler = grpc.RpcMethodHandler

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
API_KEY_HEADER = "x-api-key"
CLIENT_KEY_ID: ContextVar[str] = ContextVar("client_key_id", default=ANONYMOUS)

DEFAULT_EXEMPT = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MISSING = "missing API key"
INVALID = "invalid API key"

# As the stubs have it; at run time grpc passes None on for a method nobody serves.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
Behavior = Callable[..., Any]
Metadata = Sequence[tuple[str, str | bytes]]

# (request_streaming, response_streaming) -> the factory for that kind of handler
_FACTORIES: dict[tuple[bool, bool], Callable[..., Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
_ATTRS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


def presented_key(metadata: Metadata | None) -> str | None:
    """The key a caller sent, from ``x-api-key`` or ``authorization: Bearer``; None if none."""
    bearer = None
    for name, value in metadata or ():
        if isinstance(value, bytes):
            continue  # keys are ASCII text; binary (-bin) headers cannot carry one
        if name == API_KEY_HEADER:
            return value.strip()
        scheme, _, token = value.strip().partition(" ")
        if name == "authorization" and scheme.lower() == "bearer" and bearer is None:
            bearer = token.strip()
    return bearer


def _bind(behavior: Behavior, key_id: str) -> Behavior:
    """``behavior`` running with CLIENT_KEY_ID set, keeping its sync/async/generator kind.

    grpc.aio runs coroutine and async-generator behaviors on the event loop and the rest in a
    thread pool, so the wrapper must be of the same kind as what it wraps.
    """
    if inspect.isasyncgenfunction(behavior):
        return _bind_async_gen(behavior, key_id)
    if inspect.iscoroutinefunction(behavior):
        return _bind_coroutine(behavior, key_id)
    if inspect.isgeneratorfunction(behavior):
        return _bind_generator(behavior, key_id)
    return functools.partial(_run_as, key_id, behavior)


def _bind_async_gen(behavior: Behavior, key_id: str) -> Behavior:
    async def agen(*args: Any) -> AsyncIterator[Any]:
        token = CLIENT_KEY_ID.set(key_id)
        try:
            async for item in behavior(*args):
                yield item
        finally:
            CLIENT_KEY_ID.reset(token)

    return agen


def _bind_coroutine(behavior: Behavior, key_id: str) -> Behavior:
    async def coro(*args: Any) -> Any:
        token = CLIENT_KEY_ID.set(key_id)
        try:
            return await behavior(*args)
        finally:
            CLIENT_KEY_ID.reset(token)

    return coro


def _bind_generator(behavior: Behavior, key_id: str) -> Behavior:
    def gen(*args: Any) -> Iterator[Any]:
        # Each step may run on a different pool thread: set the variable per step.
        iterator = _run_as(key_id, behavior, *args)
        while True:
            try:
                item = _run_as(key_id, next, iterator)
            except StopIteration:
                return
            yield item

    return gen


def _run_as(key_id: str, func: Callable[..., Any], *args: Any) -> Any:
    token = CLIENT_KEY_ID.set(key_id)
    try:
        return func(*args)
    finally:
        CLIENT_KEY_ID.reset(token)


def _kind(handler: Handler | None) -> tuple[bool, bool]:
    if handler is None:
        return False, False
    return bool(handler.request_streaming), bool(handler.response_streaming)


def _with_behavior(handler: Handler, behavior: Behavior) -> Handler:
    return _FACTORIES[_kind(handler)](
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _denial(kind: tuple[bool, bool], details: str) -> Handler:
    """A handler of the method's own kind (so no stream is left waiting) that only aborts.

    It has no deserializer: an unauthenticated request is never parsed.
    """

    async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        end_call(context, grpc.StatusCode.UNAUTHENTICATED, details)

    return _FACTORIES[kind](deny)


class ApiKeyInterceptor(_Interceptor):
    """Rejects calls without a valid API key with UNAUTHENTICATED; ``store=None`` disables auth.

    Every ``reload_every_s`` seconds (checked on a call) the store re-reads its keys file if it
    changed, so rotated keys take effect without a restart; a broken file keeps the old keys.
    """

    def __init__(
        self,
        store: KeyStore | None,
        exempt: Sequence[str] = DEFAULT_EXEMPT,
        reload_every_s: float | None = 10.0,
    ) -> None:
        self._store = store
        self._exempt = tuple(exempt)
        self._reload_every_s = reload_every_s
        self._next_reload = time.monotonic() + (reload_every_s or 0.0)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        method = handler_call_details.method or ""
        handler: Handler | None = await continuation(handler_call_details)
        if method.startswith(self._exempt):
            return cast(Handler, handler)
        key_id, denial = self._authenticate(handler_call_details.invocation_metadata, method)
        if denial:  # checked before UNIMPLEMENTED, so strangers cannot probe for methods
            return _denial(_kind(handler), denial)
        if handler is None:
            return cast(Handler, None)  # unknown method: grpc answers UNIMPLEMENTED
        behavior = getattr(handler, _ATTRS[_kind(handler)])
        return _with_behavior(handler, _bind(behavior, key_id))

    def _authenticate(self, metadata: Metadata | None, method: str) -> tuple[str, str]:
        """``(key_id, "")`` for a valid key (ANONYMOUS with auth off), else ``("", why)``."""
        if self._store is None:
            return ANONYMOUS, ""
        self._maybe_reload(self._store)
        key = presented_key(metadata)
        if not key:
            return "", MISSING
        key_id = self._store.verify(key)
        if key_id is None:
            log.info("rejected an invalid API key", extra={"fields": {"method": method}})
            return "", INVALID
        return key_id, ""

    def _maybe_reload(self, store: KeyStore) -> None:
        if self._reload_every_s is None or time.monotonic() < self._next_reload:
            return
        self._next_reload = time.monotonic() + self._reload_every_s
        try:
            if store.reload_if_changed():
                log.info("API keys reloaded", extra={"fields": {"keys": len(store)}})
        except KeyFileError as exc:
            log.warning("API keys not reloaded, keeping the old ones: %s", exc)
