"""``rollout-operator`` as a child process, which tests and the demo start, SIGKILL, restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

OPERATOR_START_TIMEOUT_S = 30.0


class OperatorProcess:
    """``rollout-operator`` watching some namespaces, its output in a log file; ``metrics_port``
    0 lets the operator pick one (logged), ``health_port`` 0 serves no liveness endpoint."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: tuple[str, ...],
        log: Path,
        *,
        metrics_port: int = 0,
        health_port: int = 0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log = log
        self.ports = {"--metrics-port": metrics_port, "--health-port": health_port}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        exe = Path(sys.executable).parent / "rollout-operator"
        scope = [arg for ns in self.namespaces for arg in ("-n", ns)]
        return [
            str(exe), "--kubeconfig", str(self.kubeconfig), *scope,
            "--tick", "0.5",
            *(arg for option, port in self.ports.items() for arg in (option, str(port))),
        ]  # fmt: skip

    def start(self) -> OperatorProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            self.process = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_serving()
        return self

    def _wait_serving(self) -> None:
        """Until the operator has started its metrics endpoint and kopf is watching."""
        deadline = time.monotonic() + OPERATOR_START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.running, f"rollout-operator exited at start:\n{self.tail()}"
            if self.metrics_port() is not None:
                return
            time.sleep(0.1)
        raise TimeoutError(f"rollout-operator did not start:\n{self.tail()}")

    def metrics_port(self) -> int | None:
        """The port of the latest start's /metrics (the operator logs it)."""
        text = self.log.read_text(errors="replace").rsplit("===== start", 1)[-1]
        found = re.findall(r"operator metrics on :(\d+)/metrics", text)
        return int(found[-1]) if found else None

    def metrics(self) -> str:
        port = self.metrics_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
            return text

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed or cleaned up."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
