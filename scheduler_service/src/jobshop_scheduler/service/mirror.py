"""Application-level traffic mirroring, so a shadow rollout works on clusters without a mesh.

The operator writes a JSON config into a ConfigMap mounted into the serving pods::

    {"target": "scheduler-shadow:50051", "percent": 10, "timeout_ms": 2000,
     "tls_ca_file": "/etc/mirror-tls/ca.crt", "api_key_file": "/etc/mirror-key/key"}

A missing file, an empty file or ``"percent": 0`` means mirroring is off. ``Mirror.offer`` is
called on the serving path, so it is synchronous, O(1), and never blocks or raises: a sampled
request goes into a bounded queue, and when the queue is full it is dropped and counted. Worker
tasks send queued requests to the shadow; their failures are counted and logged (rate limited),
never propagated. A config the scheduler cannot use is logged once and the previous one is kept:
a typo in a ConfigMap must not take the serving pods down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge

from jobshop_scheduler.api import pb
from jobshop_scheduler.service import tls

log = logging.getLogger(__name__)

MIRRORED_FROM_HEADER = "x-mirrored-from"
API_KEY_HEADER = "x-api-key"
SCHEDULE_METHOD = "/scheduler.v1.Scheduler/Schedule"
OUTCOMES = ("sent", "failed", "dropped")
DEFAULT_TIMEOUT_MS = 2000
MAX_TIMEOUT_MS = 600_000
_FIELDS = frozenset({"target", "percent", "timeout_ms", "tls_ca_file", "api_key_file"})
_WARN_EVERY_S = 30.0


class MirrorConfigError(ValueError):
    """A mirror config that cannot be used; names the file and field, never a secret's value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _bad(field: str, problem: str, source: str | None = None) -> MirrorConfigError:
    prefix = f"{source}: " if source else ""
    return MirrorConfigError(f"{prefix}field '{field}' {problem}", field)


def _check_target(target: str) -> None:
    host, sep, port = target.rpartition(":")
    if not sep or not host or host in ("[", "[]"):
        raise _bad("target", "must be 'host:port'")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad("target", "must end in a port number 1-65535")


@dataclass(frozen=True)
class MirrorConfig:
    """Where to mirror, how much, and how; ranges are checked here, JSON types by the parser."""

    target: str
    percent: float
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    tls_ca_file: Path | None = None
    api_key_file: Path | None = None

    def __post_init__(self) -> None:
        _check_target(self.target)
        _check_ranges(self.percent, self.timeout_ms)


def _check_ranges(percent: float, timeout_ms: int, source: str | None = None) -> None:
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise _bad("percent", "must be a number from 0 to 100", source)
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise _bad("timeout_ms", f"must be an integer from 1 to {MAX_TIMEOUT_MS}", source)


def _number(data: dict[str, Any], field: str, source: str) -> float:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "must be a number", source)
    return float(value)


def _optional_path(data: dict[str, Any], field: str, source: str) -> Path | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, "must be a non-empty path string or null", source)
    return Path(value)


def parse_mirror_config(text: str, source: str = "mirror config") -> MirrorConfig | None:
    """The config in ``text``; None when it turns mirroring off (empty, or percent 0)."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        raise MirrorConfigError(msg) from None
    if not isinstance(data, dict):
        raise MirrorConfigError(f"{source}: must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise _bad(unknown[0], f"is not known (expected one of {sorted(_FIELDS)})", source)
    if "percent" not in data:
        raise _bad("percent", "is required", source)
    percent = _number(data, "percent", source)
    timeout = data.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise _bad("timeout_ms", "must be an integer", source)
    _check_ranges(percent, timeout, source)
    tls_ca_file = _optional_path(data, "tls_ca_file", source)
    api_key_file = _optional_path(data, "api_key_file", source)
    if percent == 0:
        return None
    target = data.get("target")
    if not isinstance(target, str):
        raise _bad("target", "is required, a string 'host:port'", source)
    try:
        return MirrorConfig(target, percent, timeout, tls_ca_file, api_key_file)
    except MirrorConfigError as exc:
        raise MirrorConfigError(f"{source}: {exc}", exc.field) from None


def load_mirror_config(path: Path) -> MirrorConfig | None:
    """The config in ``path``; None (mirroring off) when the file is missing or says off."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise MirrorConfigError(
            f"mirror config {path}: cannot read ({type(exc).__name__})"
        ) from None
    return parse_mirror_config(text, str(path))


def read_api_key(path: Path) -> str:
    """The key in ``path``, stripped; errors name the file but never repeat its content."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise _bad("api_key_file", f"names a missing file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad("api_key_file", f"cannot be read ({type(exc).__name__}): {path}") from None
    if not key:
        raise _bad("api_key_file", f"names an empty file: {path}")
    if not key.isprintable() or any(c.isspace() for c in key):
        raise _bad("api_key_file", f"must hold one key on one line: {path}")
    return key


def stable_unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: the same key lands on the same side of any cut."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sampled(request_id: str, percent: float) -> bool:
    """Whether ``request_id`` is mirrored at ``percent``: always or never for a given id."""
    return stable_unit(request_id) * 100 < percent


Signature = tuple[object, ...]


def _file_signature(path: Path) -> object:
    """What identifies a file's version; ConfigMaps swap symlinks, so resolve, then hash."""
    try:
        real = path.resolve()
        stat = real.stat()
        digest = hashlib.sha256(real.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("unreadable", type(exc).__name__)
    return (str(real), stat.st_mtime_ns, stat.st_size, digest)


class ConfigWatcher:
    """Polls a file (and optionally the files it names) and calls ``on_change`` when any moves.

    Polling rather than inotify: a ConfigMap update replaces a symlink target, which inotify on
    the visible path misses. ``on_change`` runs on the event loop; its exceptions are logged.
    """

    def __init__(
        self,
        path: Path,
        interval_s: float = 2.0,
        *,
        on_change: Callable[[], None],
        extra_paths: Callable[[], Iterable[Path]] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.path = path
        self.interval_s = interval_s
        self._on_change = on_change
        self._extra_paths = extra_paths
        self._seen: Signature | None = None
        self._task: asyncio.Task[None] | None = None

    def _paths(self) -> tuple[Path, ...]:
        return (self.path, *(self._extra_paths() if self._extra_paths else ()))

    def check(self) -> bool:
        """Poll once; call ``on_change`` (and return True) if anything changed since last time."""
        paths = self._paths()
        signature: Signature = (paths, *(_file_signature(p) for p in paths))
        if signature == self._seen:
            return False
        self._seen = signature
        try:
            self._on_change()
        except Exception:
            log.exception("config watcher callback failed for %s", self.path)
        if self._paths() != paths:
            # The callback changed which files matter: take the new ones as they are now.
            paths = self._paths()
            self._seen = (paths, *(_file_signature(p) for p in paths))
        return True

    async def start(self) -> None:
        """Load the current state at once (``on_change`` fires), then poll in the background."""
        if self._task is not None:
            return
        self.check()
        self._task = asyncio.create_task(self._run(), name=f"watch {self.path}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._seen = None  # a restart loads the file again
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check()
            except Exception:  # a watcher that dies would freeze the config silently
                log.exception("config watcher poll failed for %s", self.path)


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
        raise _bad("tls_ca_file", f"cannot be read ({type(exc).__name__})") from None
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
        self._queue: asyncio.Queue[pb.ScheduleRequest] = asyncio.Queue(maxsize=queue_size)
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

    def offer(self, request: pb.ScheduleRequest) -> bool:
        """Queue ``request`` for the shadow if sampled; True if queued. Never blocks or raises."""
        try:
            target = self._target
            if target is None or self._loop is None:
                return False
            if asyncio.get_running_loop() is not self._loop:
                return False
            if not self._sampled(request.request_id, target.config.percent):
                return False
            self._queue.put_nowait(request)
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
            request = await self._queue.get()
            try:
                await self._send(request)
            finally:
                self._queue.task_done()

    async def _send(self, request: pb.ScheduleRequest) -> None:
        target = self._target
        if target is None:
            return  # mirroring was turned off while the request waited
        try:
            await target.call(
                request,
                timeout=target.config.timeout_ms / 1000,
                metadata=target.metadata,
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
