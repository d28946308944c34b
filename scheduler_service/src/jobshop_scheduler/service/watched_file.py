"""Config files the server watches while it runs: the mirror config and the test faults file.

Both are small JSON objects in files a ConfigMap (or a test) replaces at run time; both are read
the same way (`parse_json_object`: empty means "off", JSON errors name line and column, unknown
fields are refused by name) and watched the same way (`ConfigWatcher`). The parsers of the two
files check their own fields' types and ranges.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ConfigFileError(ValueError):
    """A watched file that cannot be used; names the file and field, never a secret's value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def read_text(path: Path, error: type[ConfigFileError]) -> str | None:
    """The file's text; None when it does not exist (a config that is not mounted)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read ({type(exc).__name__})") from None


def parse_json_object(
    text: str, source: str, fields: Sequence[str], error: type[ConfigFileError]
) -> dict[str, Any] | None:
    """The JSON object in ``text``, its keys among ``fields`` (named in that order when one is
    not); None for an empty text."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        raise error(msg) from None
    if not isinstance(data, dict):
        raise error(f"{source}: must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise error(
            f"{source}: field '{unknown[0]}' is not known (expected one of {list(fields)})",
            unknown[0],
        )
    return data


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
