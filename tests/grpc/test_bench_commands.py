"""`schedctl bench-latency --quick` and a 5-second `schedctl soak` run against real servers.

Smoke runs: they check that the commands start their servers, fill every cell of the table and
report no failed call. The numbers themselves are for people to read, not for assertions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobshop_scheduler import cli
from jobshop_scheduler.bench import latency

pytestmark = pytest.mark.grpc


def test_bench_latency_quick_fills_every_cell_without_errors(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench-latency", "--quick", "--quiet", "--model-dir", str(tiny_model_dir)]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    cells = latency.grid(latency.QUICK_SIZES, latency.QUICK_CONCURRENCY)
    for cell in cells:
        row = rf"^{cell.kind}\s+{cell.jobs}\s+{cell.policy}\s+{cell.concurrency}\s+"
        row += rf"{latency.QUICK_REQUESTS}\s.*\s0\s+\S+\s+\S+$"  # n ... errors 0, two ratios
        assert re.search(row, out, re.MULTILINE), f"no row for {cell} in:\n{out}"
    assert "fast path vs SB3 predict" in out and "speed-up" in out
    assert "mirroring (production 12 jobs" in out

    data = json.loads((tmp_path / "latency.json").read_text())
    assert len(data["cells"]) == len(cells)
    for row in data["cells"]:
        assert (row["requests"], row["errors"]) == (latency.QUICK_REQUESTS, 0), row
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], row
        assert row["server_p50_ms"] > 0 and row["throughput_rps"] > 0, row
    mirror = data["mirror"]
    assert mirror["errors"] == 0
    assert mirror["mirrored_sent"] == mirror["requests"] == latency.QUICK_REQUESTS
    assert mirror["p50_ratio"] > 0 and mirror["p99_ratio"] > 0
    fast = data["fast_path"]
    assert fast["jobs"] == max(latency.QUICK_SIZES) and fast["speedup"] > 0
    csv_lines = (tmp_path / "latency.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(cells)


def test_soak_runs_and_reports_memory(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["soak", "--duration", "5", "--jobs", "20", "--sample-every", "1", "--quiet"]
    code = cli.main([*argv, "--model-dir", str(tiny_model_dir)])
    out = capsys.readouterr().out
    assert code in (0, 1), out  # 1 is a FAIL verdict; 2 would mean the server never served
    assert re.search(r"^\s+errors\s+0$", out, re.MULTILINE), out
    requests = re.search(r"^\s+requests\s+(\d+) ", out, re.MULTILINE)
    assert requests and int(requests[1]) > 0, out
    for label in ("RSS after", "RSS at end", "RSS peak", "growth"):
        assert label in out, out
    verdict = "PASS" if code == 0 else "FAIL"
    assert re.search(rf"^\s+verdict\s+{verdict}$", out, re.MULTILINE), out
