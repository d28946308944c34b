"""A private Prometheus server whose scrape targets a test sets at run time.

Targets are changed by rewriting the generated config and POSTing /-/reload, so one server can
serve a whole test session. Scrapes run every second to keep tests short.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries
from testbed.process import ManagedProcess, free_port

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    targets: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    interval: str = "1s"


class PrometheusServer:
    def __init__(self, directory: Path, rule_files: Sequence[Path] = ()) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = directory / "prometheus.yml"
        self.rule_files = [str(p) for p in rule_files]
        self.jobs: dict[str, ScrapeJob] = {}
        self._write_config()
        self.process = ManagedProcess(
            "prometheus",
            [
                binaries.find("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            directory / "prometheus.log",
        )

    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": [
                {
                    "job_name": job.name,
                    "scrape_interval": job.interval,
                    "static_configs": [{"targets": list(job.targets), "labels": job.labels}],
                }
                for job in self.jobs.values()
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._ready, START_TIMEOUT)

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    def describe(self) -> str:
        with urllib.request.urlopen(f"{self.url}/api/v1/status/buildinfo", timeout=5) as resp:
            version = json.load(resp)["data"]["version"]
        return f"prometheus {version} at {self.url}"

    def scrape(self, job: ScrapeJob) -> None:
        """Add or replace a scrape job and make the server load it."""
        self.jobs[job.name] = job
        self._write_config()
        self._reload()

    def forget(self, job_name: str) -> None:
        self.jobs.pop(job_name, None)
        self._write_config()
        self._reload()

    def _reload(self) -> None:
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            if resp.status != 200:
                raise RuntimeError(f"Prometheus reload answered HTTP {resp.status}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the raw `result` list of the HTTP API."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_series(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the query returns at least one series (scrapes run every second)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"no series for {promql!r} after {timeout:.0f}s")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
