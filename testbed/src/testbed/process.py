"""One supervised child process: start it, wait until it answers, stop it, keep its log."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from jobshop_scheduler.bench.servers import free_port, log_tail, terminate

__all__ = ["ManagedProcess", "ServerStartError", "free_port", "log_tail"]


class ServerStartError(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


class ManagedProcess:
    """A child process whose stdout and stderr go to a log file in its own directory."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the server
            )

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
        """Poll `probe` until it returns True; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if not self.running():
                code = self._proc.returncode if self._proc else None
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready; "
                    f"log {self.log_path}:\n{log_tail(self.log_path, 40)}"
                )
            try:
                if probe():
                    return
            except Exception as exc:  # any probe failure means "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(interval)
        self.stop()
        raise ServerStartError(
            f"{self.name} not ready after {timeout:.0f}s "
            f"(last probe error: {last_error or 'none'}); "
            f"log {self.log_path}:\n{log_tail(self.log_path, 40)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self._proc is not None:
            terminate(self._proc, grace)

    def kill(self) -> None:
        """SIGKILL at once: the crash a fault drill wants."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
