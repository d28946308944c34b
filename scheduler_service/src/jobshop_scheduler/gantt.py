"""A schedule as a Gantt chart (PNG): one row per machine, one bar per operation.

Meant for a planner's eye, not for analysis: it shows at a glance idle gaps, overloaded
machines and how late the last job ends. Each job keeps one colour across machines, so a job's
path through the shop can be followed. Rendered with matplotlib's Agg canvas (no display, no
global pyplot state), the same way the benchmark draws its plots.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jobshop_scheduler.domain.model import Assignment, Schedule

MAX_LABELLED_BARS = 60  # beyond this, text inside bars is unreadable clutter


def _colour_index(job_id: str, colours: int) -> int:
    """A stable colour per job id, the same in every chart."""
    return int(hashlib.blake2b(job_id.encode(), digest_size=4).hexdigest(), 16) % colours


def write_gantt(schedule: Schedule, machines: Sequence[str], path: Path, title: str = "") -> Path:
    """Draw ``schedule`` with ``machines`` as rows (top to bottom in that order) into ``path``."""
    rows: dict[str, list[Assignment]] = defaultdict(list)
    for a in schedule.assignments:
        rows[a.machine_id].append(a)
    order = list(machines) + sorted(set(rows) - set(machines))
    height = min(max(2.5, 0.35 * len(order) + 1.5), 40.0)
    figure = Figure(figsize=(12, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    palette = colormaps["tab20"]
    label = len(schedule.assignments) <= MAX_LABELLED_BARS
    for y, machine in enumerate(order):
        for a in rows.get(machine, ()):
            colour = palette(_colour_index(a.job_id, palette.N))
            axes.broken_barh([(a.start, a.end - a.start)], (y - 0.4, 0.8), facecolors=colour)
            if label:
                axes.text((a.start + a.end) / 2, y, a.job_id, ha="center", va="center", fontsize=7)
    axes.set_yticks(range(len(order)), labels=order)
    axes.invert_yaxis()
    axes.set_xlim(0, max(schedule.makespan, 1))
    axes.set_xlabel("time")
    axes.set_title(title or f"makespan {schedule.makespan}")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path
