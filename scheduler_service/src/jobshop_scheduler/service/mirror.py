"""Application-level traffic mirroring, so a shadow rollout works on clusters without a mesh.

The config (`mirror_config`) names the shadow and the share of traffic. ``Mirror.offer`` is
called on the serving path, so it is synchronous, O(1), and never blocks or raises: a sampled
request goes into a bounded queue, and when the queue is full it is dropped and counted. Worker
tasks send queued requests to the shadow; their failures are counted and logged (rate limited),
never propagated. A config the scheduler cannot use is logged once and the previous one is kept:
a typo in a ConfigMap must not take the serving pods down.

The copy is offered after this pod answered, with its own answer: when the shadow's answer
comes back, the two plans for the same request make one pair (``shadow_pairs``), the evidence
the operator's sequential shadow verdict counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge

from jobshop_scheduler.api import SCHEDULE_METHOD, pb
from jobshop_scheduler.service import tls
from jobshop_scheduler.service.auth import API_KEY_HEADER
from jobshop_scheduler.service.mirror_config import (
    MirrorConfig,
    MirrorConfigError,
    bad_field,
    load_mirror_config,
    read_api_key,
)
from jobshop_scheduler.service.sampling import sampled
from jobshop_scheduler.service.shadow_pairs import ShadowPairs, complete_makespan
from jobshop_scheduler.service.watched_file import ConfigWatcher

log = logging.getLogger(__name__)

MIRRORED_FROM_HEADER = "x-mirrored-from"
OUTCOMES = ("sent", "failed", "dropped")
_WARN_EVERY_S = 30.0


@dataclass(frozen=True)
class _Copy:
    """A queued request, its caller's API key and the makespan of this pod's complete answer."""

    request: pb.ScheduleRequest
    api_key: str | None
    stable_makespan: int | None


@dataclass(frozen=True)
class _Target:
    """A usable config with its channel; the channel is shared while target and TLS stay."""

    config: MirrorConfig
    channel_key: tuple[str, str | None, str | None]
    channel: grpc.aio.Channel
    call: grpc.aio.UnaryUnaryMultiCallable[pb.ScheduleRequest, pb.ScheduleResponse]
    metadata: tuple[tuple[str, str], ...]


def _channel_key(config: MirrorConfig) -> tuple[str, str | None, str | None]:
    if config.tls_ca_file is None:
        return (config.target, None, None)
    try:
        ca = config.tls_ca_file.read_bytes()
    except OSError as exc:
        raise bad_field("tls_ca_file", f"cannot be read ({type(exc).__name__})") from None
    return (config.target, str(config.tls_ca_file), hashlib.sha256(ca).hexdigest())


def _open_channel(config: MirrorConfig) -> grpc.aio.Channel:
    if config.tls_ca_file is None:
        return grpc.aio.insecure_channel(config.target)
    try:
        credentials = tls.channel_credentials(config.tls_ca_file)
    except (OSError, ValueError) as exc:
        raise MirrorConfigError(f"field 'tls_ca_file': {exc}", "tls_ca_file") from None
    return grpc.aio.secure_channel(config.target, credentials)


class Mirror:
    """Samples served requests and replays them, fire-and-forget, to a shadow scheduler.

    ``offer`` must be called on the event loop that ran ``start``. The request is sent later,
    so the caller must not mutate it after offering it.
    """

    def __init__(
        self,
        config_path: Path | None,
        registry: CollectorRegistry,
        track: str,
        queue_size: int = 256,
        workers: int = 4,
        *,
        poll_interval_s: float = 2.0,
    ) -> None:
        if not track or not track.isascii() or not track.isprintable():
            raise ValueError("track must be a non-empty printable ASCII name")
        if queue_size < 1 or workers < 1:
            raise ValueError("queue_size and workers must be at least 1")
        self.track = track
        self._path = config_path
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(maxsize=queue_size)
        self._n_workers = workers
        self._workers: list[asyncio.Task[None]] = []
        self._target: _Target | None = None
        self._named_files: tuple[Path, ...] = ()
        self._closing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counter_acc = 0.0
        self._last_warning = -math.inf
        self._unwarned = 0
        self._watcher = (
            ConfigWatcher(
                config_path,
                poll_interval_s,
                on_change=self.reload,
                extra_paths=lambda: self._named_files,
            )
            if config_path is not None
            else None
        )
        requests = Counter(
            "scheduler_mirror_requests",
            "Requests mirrored to the shadow, by outcome (dropped: the mirror queue was full)",
            ["track", "outcome"],
            registry=registry,
        )
        self._outcomes = {o: requests.labels(track=track, outcome=o) for o in OUTCOMES}
        depth = Gauge(
            "scheduler_mirror_queue_depth",
            "Requests waiting in the mirror queue",
            ["track"],
            registry=registry,
        )
        depth.labels(track=track).set_function(self._queue.qsize)
        self._pairs = ShadowPairs(registry, track)

    @property
    def config(self) -> MirrorConfig | None:
        """The config in force; None while mirroring is off."""
        return self._target.config if self._target else None

    async def start(self) -> None:
        """Load the config, start watching it and start the workers."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._watcher is not None:
            await self._watcher.start()
        self._workers = [
            asyncio.create_task(self._work(), name=f"mirror worker {i}")
            for i in range(self._n_workers)
        ]

    async def stop(self) -> None:
        """Stop watching, cancel the workers, drop what is queued and close the channels."""
        self._loop = None
        if self._watcher is not None:
            await self._watcher.stop()
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()
        target, self._target = self._target, None
        if target is not None:
            await target.channel.close(None)
        await asyncio.gather(*self._closing, return_exceptions=True)

    def offer(
        self,
        request: pb.ScheduleRequest,
        api_key: str | None = None,
        answer: pb.ScheduleResponse | None = None,
    ) -> bool:
        """Queue ``request`` for the shadow if sampled; True if queued. Never blocks or raises.
        ``api_key``: the caller's, sent with the copy unless the config names a key file, as a
        gateway's mirror copies the request's headers (the shadow checks keys like the stable).
        ``answer``: this pod's own answer, which the shadow's is paired with (None: no pair)."""
        try:
            target = self._target
            if target is None or self._loop is None:
                return False
            if asyncio.get_running_loop() is not self._loop:
                return False
            if not self._sampled(request.request_id, target.config.percent):
                return False
            self._queue.put_nowait(_Copy(request, api_key, complete_makespan(answer)))
        except asyncio.QueueFull:
            self._outcomes["dropped"].inc()
            return False
        except Exception:
            log.debug("mirror offer failed", exc_info=True)
            return False
        return True

    def _sampled(self, request_id: str, percent: float) -> bool:
        if request_id:
            return sampled(request_id, percent)
        # No id to hash: a running counter mirrors exactly `percent` of such requests.
        self._counter_acc += percent
        if self._counter_acc >= 100:
            self._counter_acc -= 100
            return True
        return False

    def reload(self) -> None:
        """Re-read the config now (the watcher calls this on change); a bad one is kept out."""
        if self._path is None:
            return
        try:
            config = load_mirror_config(self._path)
            self._named_files = _named_files(config)
            target = self._build(config) if config is not None else None
        except MirrorConfigError as exc:
            log.warning("mirror config rejected, keeping the previous one: %s", exc)
            return
        self._swap(target)

    def _build(self, config: MirrorConfig) -> _Target:
        key = _channel_key(config)
        metadata = [(MIRRORED_FROM_HEADER, self.track)]
        if config.api_key_file is not None:
            metadata.append((API_KEY_HEADER, read_api_key(config.api_key_file)))
        current = self._target
        if current is not None and current.channel_key == key:
            channel, call = current.channel, current.call
        else:
            channel = _open_channel(config)
            call = channel.unary_unary(
                SCHEDULE_METHOD,
                request_serializer=pb.ScheduleRequest.SerializeToString,
                response_deserializer=pb.ScheduleResponse.FromString,
            )
        return _Target(config, key, channel, call, tuple(metadata))

    def _swap(self, target: _Target | None) -> None:
        old, self._target = self._target, target
        if old is not None and (target is None or old.channel is not target.channel):
            # Let calls in flight on the old channel finish within their own timeout.
            grace = old.config.timeout_ms / 1000
            task = asyncio.create_task(old.channel.close(grace))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if target is None:
            log.info("mirroring off", extra={"fields": {"track": self.track}})
        else:
            fields = {
                "track": self.track,
                "target": target.config.target,
                "percent": target.config.percent,
                "tls": target.config.tls_ca_file is not None,
                "api_key": target.config.api_key_file is not None,
            }
            log.info("mirroring on", extra={"fields": fields})

    async def _work(self) -> None:
        while True:
            copy = await self._queue.get()
            try:
                await self._send(copy)
            finally:
                self._queue.task_done()

    async def _send(self, copy: _Copy) -> None:
        target = self._target
        if target is None:
            return  # mirroring was turned off while the request waited
        metadata = target.metadata
        if copy.api_key is not None and target.config.api_key_file is None:
            metadata = (*metadata, (API_KEY_HEADER, copy.api_key))
        try:
            response = await target.call(
                copy.request,
                timeout=target.config.timeout_ms / 1000,
                metadata=metadata,
                wait_for_ready=False,
            )
        except grpc.aio.AioRpcError as exc:
            self._failed(target, exc.code().name)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # stop(): this worker is being cancelled
            self._failed(target, "CANCELLED")  # the call was, by a channel closing under it
        except Exception as exc:
            self._failed(target, type(exc).__name__)
        else:
            self._outcomes["sent"].inc()
            self._pairs.record(copy.stable_makespan, response)

    def _failed(self, target: _Target, reason: str) -> None:
        self._outcomes["failed"].inc()
        log.debug("mirror to %s failed: %s", target.config.target, reason)
        now = time.monotonic()
        if now - self._last_warning < _WARN_EVERY_S:
            self._unwarned += 1
            return
        log.warning(
            "mirror to %s failing: %s (%d more failures since the last warning)",
            target.config.target,
            reason,
            self._unwarned,
        )
        self._last_warning = now
        self._unwarned = 0


def _named_files(config: MirrorConfig | None) -> tuple[Path, ...]:
    if config is None:
        return ()
    return tuple(p for p in (config.tls_ca_file, config.api_key_file) if p is not None)
