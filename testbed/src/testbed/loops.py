"""A round every so often on a daemon thread: what the platform's watchers and stand-ins share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

log = logging.getLogger(__name__)


class Loop:
    """Calls ``step`` every ``period`` seconds until ``stop()``. A round that raises is logged
    and the next one goes on: the API server restarting or Prometheus killed by a drill is a
    passing state here, not an end."""

    def __init__(self, name: str, period: float, step: Callable[[], None]) -> None:
        self.name = name
        self.period = period
        self.step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopping(self) -> threading.Event:
        """Set by ``stop()``: a step that waits uses it to end early."""
        return self._stop

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.step()
            except Exception as exc:
                log.warning(
                    "%s: round failed (%s: %s); next round", self.name, type(exc).__name__, exc
                )
