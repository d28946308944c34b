"""``kubectl schedrollout report``: a rollout's life in Markdown and a PNG, from its status and
Prometheus.

``timeline`` reads the object (steps from ``status.history``, decisions and who took them),
``figures`` measures each step and track in Prometheus over the rollout's life, ``markdown`` and
``chart`` write the two files. The report is read-only: it never writes to the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_operator.report import chart, figures, markdown, timeline


@dataclass(frozen=True)
class Written:
    markdown: Path
    png: Path | None  # None: matplotlib missing, see ``png_error``
    png_error: str = ""


def write(
    rollout: Mapping[str, Any],
    out_dir: Path,
    *,
    prometheus: str | None = None,
    now: float | None = None,
    step_s: float | None = None,
) -> Written:
    """Write ``NAME.md`` and ``NAME.png`` into ``out_dir``; Prometheus at ``prometheus``, else
    the rollout's ``spec.analysis.prometheus.url``."""
    now = time.time() if now is None else now
    meta = rollout.get("metadata") or {}
    name, namespace = str(meta.get("name") or "rollout"), str(meta.get("namespace") or "default")
    url = prometheus or _spec_url(rollout)
    life = timeline.life(rollout, now)
    segments = timeline.segments(rollout, now)
    source = figures.PrometheusSource(url)
    try:
        measured = figures.measure(source, namespace, segments, life, step_s=step_s)
    finally:
        source.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    text = markdown.render(
        rollout, segments, life, measured, timeline.decisions(rollout),
        prometheus=url, png_name=png.name,
    )  # fmt: skip
    md = out_dir / f"{name}.md"
    md.write_text(text)
    try:
        chart.render(png, f"{namespace}/{name}", measured.series, segments)
    except chart.ChartUnavailable as exc:
        return Written(md, None, str(exc))
    return Written(md, png)


def _spec_url(rollout: Mapping[str, Any]) -> str:
    analysis = (rollout.get("spec") or {}).get("analysis") or {}
    return str((analysis.get("prometheus") or {}).get("url") or "http://localhost:9090")
