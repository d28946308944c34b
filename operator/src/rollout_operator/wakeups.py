"""When each rollout is reconciled next, how the task waiting for that moment is woken, and in
which order due reconciles get a thread.

One asyncio task per rollout in progress (the kopf daemon in `handlers.py`) sleeps until its
rollout's next reconcile is due, then runs it in kopf's thread pool. The moment comes from the
reconcile itself (`plan.next_reconcile_at`: a step's end, the next analysis round, a deadline,
or the polling bound), so a rollout with nothing due costs nothing: no thread, no API request.
A reconcile that runs for another reason (a change of the object, in a pool thread) sets a new
moment and wakes the task, which then sleeps towards the new one instead.

When more reconciles are due than there are threads (many rollouts on a busy cluster), they
wait at a `Gate`: a transition's (a step's end, a deadline) goes first, since its lateness
shows in the step's start time; a routine one (an analysis round, a poll) may wait a little.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from rollout_operator.plan import Wakeup

# Wake this much after the due moment: a status time and the interval added to it are floats, and
# a reconcile whose clock reads a hair before the moment would find nothing due yet.
WAKE_MARGIN_S = 0.001


class Wakeups:
    """Per rollout uid, its next reconcile (`Wakeup`), and the waiting task's event.

    Thread-safe: reconciles run in kopf's thread pool, the waiting tasks on its event loop. A
    uid with no moment yet (new here, or after the operator restarted) is due at once; no task
    sleeps longer than ``max_sleep_s``, whatever the moment (a wall clock set back must not
    stall a rollout)."""

    def __init__(self, max_sleep_s: float, clock: Callable[[], float] = time.time) -> None:
        self.max_sleep_s = max_sleep_s
        self._clock = clock
        self._guard = threading.Lock()
        self._due: dict[str, Wakeup] = {}
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    def set(self, uid: str, wakeup: Wakeup | None) -> None:
        """The next reconcile of ``uid`` (None: nothing is due, a finished rollout, whose task
        kopf stops: a look after ``max_sleep_s`` should it still run); its waiting task, if
        any, wakes to sleep towards the new moment."""
        with self._guard:
            self._due[uid] = wakeup or Wakeup(self._clock() + self.max_sleep_s)
            waiter = self._waiters.get(uid)
        if waiter is not None:
            loop, event = waiter
            with contextlib.suppress(RuntimeError):  # the loop is closed: the operator exits
                loop.call_soon_threadsafe(event.set)

    def get(self, uid: str) -> Wakeup | None:
        with self._guard:
            return self._due.get(uid)

    def due_in(self, uid: str) -> float:
        """Seconds until ``uid``'s next reconcile (with the wake margin); 0: due now."""
        due = self.get(uid)
        if due is None:
            return 0.0
        left = due.at + WAKE_MARGIN_S - self._clock()
        return max(0.0, min(left, self.max_sleep_s))

    def forget(self, uid: str) -> None:
        """Drop a rollout's moment (deleted, or its task ended): due at once when it is back."""
        with self._guard:
            self._due.pop(uid, None)

    @contextlib.contextmanager
    def waiter(self, uid: str) -> Iterator[asyncio.Event]:
        """The event `set` fires for ``uid``, registered for the calling task's event loop while
        the block runs (one waiting task per rollout)."""
        event = asyncio.Event()
        with self._guard:
            self._waiters[uid] = (asyncio.get_running_loop(), event)
        try:
            yield event
        finally:
            with self._guard:
                if self._waiters.get(uid, (None, None))[1] is event:
                    del self._waiters[uid]


class Gate:
    """At most ``slots`` reconciles of the waiting tasks at once (the thread pool's size, so
    none queues inside the pool, where the order is first come first served). Waiting ones get
    a slot transitions first, then by due moment. Used from the event loop only."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._busy = 0
        self._waiting: list[tuple[bool, float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, wakeup: Wakeup) -> AsyncIterator[None]:
        """Hold a slot for the block, after the waiting reconciles that go before ``wakeup``."""
        if self._busy < self.slots and not self._waiting:
            self._busy += 1
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (not wakeup.transition, wakeup.at, next(self._order), granted)
            heapq.heappush(self._waiting, entry)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release()  # granted, then cancelled before it could use the slot
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """Hand the slot to the first waiter still waiting; else it is free."""
        while self._waiting:
            granted = heapq.heappop(self._waiting)[3]
            if not granted.done():
                granted.set_result(None)
                return
        self._busy -= 1


async def sleep_until(delay: float, *wakers: Awaitable[object]) -> None:
    """Sleep ``delay`` seconds, or less when one of ``wakers`` (an event's ``wait()``, kopf's
    ``stopped.wait()``) completes first; the others are cancelled."""
    waits = [asyncio.ensure_future(waker) for waker in wakers]
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
