"""The report's PNG: the plotted figures per track over the rollout's life, steps marked.

matplotlib is imported inside ``render`` (the ``report`` extra of the operator package): the
operator's image and the plugin's other commands never load it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

from rollout_operator.analysis.provider import NoData
from rollout_operator.report.figures import BY_NAME, PLOTTED, TRACKS, Series
from rollout_operator.report.timeline import Segment

COLOURS = {"stable": "tab:blue", "canary": "tab:orange", "shadow": "tab:green"}


def day(epoch: float) -> float:
    """matplotlib's date number: days since its default epoch, 1970-01-01 UTC."""
    return epoch / 86400.0


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def render(
    path: Path,
    title: str,
    series: Mapping[str, Mapping[str, Series | NoData]],
    segments: Sequence[Segment],
) -> None:
    try:
        import matplotlib  # noqa: PLC0415 - optional, heavy

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ChartUnavailable(
            f"the PNG needs matplotlib ({exc}); install rollout-operator[report]"
        ) from None
    fig, axes = plt.subplots(len(PLOTTED), 1, figsize=(10, 2.6 * len(PLOTTED)), sharex=True)
    try:
        drawn = [
            _panel(ax, BY_NAME[name].title, series.get(name, {}), segments)
            for ax, name in zip(axes, PLOTTED, strict=True)
        ]
        if any(drawn):
            axes[drawn.index(True)].legend(loc="upper left", fontsize="small")
        axes[-1].set_xlabel("time (UTC)")
        fig.suptitle(title)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def _panel(
    ax: object, title: str, by_track: Mapping[str, Series | NoData], segments: Sequence[Segment]
) -> bool:
    """One figure's lines per track; False when no track had data."""
    from matplotlib.axes import Axes  # noqa: PLC0415

    assert isinstance(ax, Axes)
    ax.set_title(title, fontsize="medium", loc="left")
    plotted = False
    for track in TRACKS:
        points = by_track.get(track)
        if isinstance(points, list) and points:
            times = [day(t) for t, _ in points]
            ax.plot(times, [v for _, v in points], label=track, color=COLOURS[track])
            plotted = True
    for segment in segments:
        ax.axvline(day(segment.start), color="grey", lw=0.6, ls=":")
    if not plotted:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    ax.xaxis_date(tz=dt.UTC)
    ax.grid(alpha=0.3)
    return plotted
