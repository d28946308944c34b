"""The gate between "process started" and "SERVING": the model must earn readiness.

A scheduler pod that answers with the heuristic because its model file is missing looks healthy
to Kubernetes and to the rollout, and silently measures the wrong thing. So the health service
starts NOT_SERVING and turns SERVING only after the model's files, checksums, feature schema and
code version check out against its card and the fast path reproduces the outputs SB3 recorded
when the model was shipped (`rl.weights`; no torch). Any failure is logged with its reason and
the server stays NOT_SERVING: the readiness probe keeps traffic away and the rollout sees a
candidate that never became ready. Loading runs in a worker thread (loading or compiling the
numba kernels takes from a fraction of a second to many) so the health service answers meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from grpc_health.v1 import health, health_pb2

from jobshop_scheduler.api import SCHEDULER_SERVICE
from jobshop_scheduler.rl.model_store import LoadedModel, ModelError, load_model
from jobshop_scheduler.search.anytime import warm_up as warm_up_search

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

CHECKING, READY, FAILED = "checking", "ready", "failed"


def load_checked_model(directory: Path, warm_search: bool = False) -> LoadedModel:
    """``model_store.load_model``, and the search's kernels when the server will search."""
    model = load_model(directory)
    log.info(
        "fast path reproduces stable-baselines3's recorded outputs",
        extra={"fields": {"model_version": model.card.version}},
    )
    if warm_search:  # here, in the loading thread: the planner would do it on the event loop
        warm_up_search()
    return model


YOUNG_COLLECTION_EVERY = 50_000
PYTHON_YOUNG_COLLECTION_EVERY = 700  # CPython's default


def freeze_startup_objects() -> None:
    """Keep the garbage collector off what start-up built (numba, grpc, the model).

    A full collection walks every tracked object; over a start-up heap of ~400k objects it took
    ~200 ms and landed in whichever request triggered it (p99 of a 170-job plan went from 85 to
    190 ms in-process). Frozen objects are skipped by every later collection; requests' own
    garbage is collected as before.

    The youngest generation is collected every `YOUNG_COLLECTION_EVERY` allocations, not 700: a
    2000-job request builds ~100k objects, none of them cyclic garbage, and at 700 the
    collections walking them (and promoting them to be walked again) took 40-120 ms of each
    large call's budget, about as much as converting it (measured in-process).
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, oldest)


def thaw_startup_objects() -> None:
    """Undo `freeze_startup_objects` at shutdown: exit tears down as usual."""
    gc.unfreeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(PYTHON_YOUNG_COLLECTION_EVERY, middle, oldest)


def new_health_servicer() -> Any:
    """A grpc.aio health servicer (``ModelGate.start_not_serving`` sets it before serving)."""
    return health.aio.HealthServicer()  # type: ignore[attr-defined]


class ModelGate:
    """Loads and checks the model, then flips health to SERVING and calls ``on_ready``."""

    def __init__(
        self,
        model_dir: Path,
        health_servicer: Any,
        on_ready: Callable[[LoadedModel], None],
        *,
        services: Sequence[str] = ("", SCHEDULER_SERVICE),
        warm_search: bool = False,
    ) -> None:
        self.model_dir = model_dir
        self._warm_search = warm_search  # compile the search's kernels before SERVING
        self.state = CHECKING
        self.reason = "model checks have not finished"
        self._health = health_servicer
        self._on_ready = on_ready
        self._services = tuple(services)

    @property
    def ready(self) -> bool:
        return self.state == READY

    async def start_not_serving(self) -> None:
        """Call before the server starts: the health servicer begins with "" SERVING."""
        for service in self._services:
            await self._health.set(service, NOT_SERVING)

    async def run(self, executor: Executor | None = None) -> None:
        """Check and load the model in ``executor``; never raises (a failure is a state)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(
                executor, load_checked_model, self.model_dir, self._warm_search
            )
            self._on_ready(model)
        except ModelError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # a bug or a broken install: still a reason to stay unready
            log.exception("model check crashed")
            self._fail(f"model check crashed: {type(exc).__name__}")
            return
        self.state, self.reason = READY, ""
        freeze_startup_objects()
        for service in self._services:
            await self._health.set(service, SERVING)
        fields = {
            "model_version": model.card.version,
            "sha256": model.card.sha256,
            "seconds": round(time.perf_counter() - started, 2),
        }
        log.info("model checks passed; SERVING", extra={"fields": fields})

    def _fail(self, reason: str) -> None:
        self.state, self.reason = FAILED, reason
        log.error(
            "model checks failed; staying NOT_SERVING: %s",
            reason,
            extra={"fields": {"model_dir": str(self.model_dir)}},
        )
