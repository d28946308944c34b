"""Results of the latency benchmark: cells, ratios, the table, CSV and JSON.

Pure functions over measured numbers, kept apart from the servers and the load driver so the
table's layout can be read (and changed) on its own.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from jobshop_scheduler import table
from jobshop_scheduler.bench.load import KIND_NOTES, LoadResult, percentile

MIRROR_TARGET = 0.10  # mirroring may cost at most 10% of client latency


@dataclass(frozen=True)
class Cell:
    kind: str
    jobs: int
    policy: str
    concurrency: int


@dataclass(frozen=True)
class CellResult:
    """One line of the table (and of latency.csv); latencies in ms."""

    kind: str
    jobs: int
    policy: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_p50_ms: float
    throughput_rps: float
    ppo_vs_heuristic_p50: float | None = None  # this cell's p50 / the heuristic's, same shape
    throughput_vs_c1: float | None = None  # this cell's req/s / the same cell's at concurrency 1
    first_error: str = ""

    def label(self) -> str:
        return f"{self.kind} {self.jobs} jobs {self.policy} c{self.concurrency}"


def cell_result(cell: Cell, result: LoadResult) -> CellResult:
    return CellResult(
        cell.kind, cell.jobs, cell.policy, cell.concurrency, result.ok, result.error_count,
        result.client_ms(50), result.client_ms(95), result.client_ms(99),
        result.server_p50_ms(), result.throughput, first_error=result.first_error,
    )  # fmt: skip


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else None


def with_ratios(results: Sequence[CellResult]) -> list[CellResult]:
    """Fill the ratio columns: ppo against heuristic, concurrency c against 1."""
    index = {(r.kind, r.jobs, r.policy, r.concurrency): r for r in results}
    out = []
    for r in results:
        heuristic = index.get((r.kind, r.jobs, "heuristic", r.concurrency))
        c1 = index.get((r.kind, r.jobs, r.policy, 1))
        vs_heuristic = (
            _ratio(r.p50_ms, heuristic.p50_ms) if heuristic and r.policy != "heuristic" else None
        )
        vs_c1 = _ratio(r.throughput_rps, c1.throughput_rps) if c1 and r.concurrency > 1 else None
        out.append(
            dataclasses.replace(r, ppo_vs_heuristic_p50=vs_heuristic, throughput_vs_c1=vs_c1)
        )
    return out


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


HEADER = ("kind", "jobs", "policy", "conc", "n", "p50", "p95", "p99", "srv p50", "req/s", "err",
          "p50/heur", "req/s/c1")  # fmt: skip


def format_table(results: Sequence[CellResult], requests: int) -> str:
    """Every cell on one line; the two ratio columns put related cells side by side."""
    lines = [
        f"Schedule over gRPC on loopback: {requests} measured calls per cell, latencies in ms "
        "(client side; srv = the server's latency_ms)",
        *(f"  {kind}: {note}" for kind, note in KIND_NOTES.items()),
    ]
    rows = [
        (r.kind, r.jobs, r.policy, r.concurrency, r.requests, f"{r.p50_ms:.1f}",
         f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.server_p50_ms:.1f}",
         f"{r.throughput_rps:.1f}", r.errors, _x(r.ppo_vs_heuristic_p50), _x(r.throughput_vs_c1))
        for r in results
    ]  # fmt: skip
    numbers = {i for i, name in enumerate(HEADER) if name not in ("kind", "policy")}
    return "\n".join(lines) + "\n" + table.render(HEADER, rows, right=numbers)


@dataclass(frozen=True)
class MirrorResult:
    """Client latency at one size, mirroring off and on (100% to a real shadow server)."""

    jobs: int
    requests: int
    off_p50_ms: float
    off_p99_ms: float
    on_p50_ms: float
    on_p99_ms: float
    errors: int
    mirrored_sent: int
    mirrored_failed: int
    mirrored_dropped: int
    shadow_answered: int

    @classmethod
    def of(
        cls,
        jobs: int,
        off: LoadResult,
        on: LoadResult,
        outcomes: dict[str, int],
        shadow_answered: int,
    ) -> MirrorResult:
        return cls(
            jobs, on.ok, percentile(off.latencies_ms, 50), percentile(off.latencies_ms, 99),
            percentile(on.latencies_ms, 50), percentile(on.latencies_ms, 99),
            off.error_count + on.error_count, outcomes["sent"], outcomes["failed"],
            outcomes["dropped"], shadow_answered,
        )  # fmt: skip

    def ratios(self) -> dict[str, float | None]:
        return {
            "p50_ratio": _ratio(self.on_p50_ms, self.off_p50_ms),
            "p99_ratio": _ratio(self.on_p99_ms, self.off_p99_ms),
        }

    def within_target(self) -> bool:
        ratios = self.ratios()
        return all(r is not None and r <= 1 + MIRROR_TARGET for r in ratios.values())


def describe_mirror(m: MirrorResult) -> str:
    ratios = m.ratios()
    verdict = "met" if m.within_target() else "NOT met"
    return "\n".join(
        [
            f"mirroring (production {m.jobs} jobs, ppo, concurrency 1, {m.requests} calls each):",
            f"  off: p50 {m.off_p50_ms:.1f} ms, p99 {m.off_p99_ms:.1f} ms",
            f"  on (100% to a shadow server): p50 {m.on_p50_ms:.1f} ms, p99 {m.on_p99_ms:.1f} ms",
            f"  on/off: p50 {_x(ratios['p50_ratio'])}, p99 {_x(ratios['p99_ratio'])}; target "
            f"within {MIRROR_TARGET:.0%}: {verdict}",
            f"  mirrored: sent {m.mirrored_sent}, failed {m.mirrored_failed}, dropped "
            f"{m.mirrored_dropped}; the shadow answered {m.shadow_answered} (it shares this "
            "machine's cores, so this is an upper bound of the cost)",
        ]
    )


def machine() -> str:
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} cores{load}"


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def write_outputs(out: Path, cells: Sequence[CellResult], data: dict[str, Any]) -> None:
    """latency.csv (one row per cell) and latency.json (everything)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "latency.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f.name for f in fields(CellResult)])
        writer.writerows(astuple(c) for c in cells)
    (out / "latency.json").write_text(json.dumps(data, indent=2) + "\n")
