"""The report's Markdown: what happened, what it measured, who decided, what it saved.

Every number is formatted here and nowhere else; a figure Prometheus had no data for reads
"no data" (its reason in the whole-life table's footnotes), never a zero.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from rollout_operator.analysis.provider import NoData
from rollout_operator.report.figures import (
    FIGURES,
    MINUTES_PER_HOUR,
    TRACKS,
    Measurements,
    Value,
)
from rollout_operator.report.timeline import Decision, Segment, status_of

NO_DATA = "no data"
# Tracks whose answers reached the plant: shadow answers are computed, never returned.
SERVED = ("stable", "canary")


def when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cell(value: Value, fmt: str) -> str:
    return NO_DATA if isinstance(value, NoData) else format(value, fmt)


def render(
    rollout: Mapping[str, Any],
    segments: Sequence[Segment],
    life: tuple[float, float],
    measured: Measurements,
    decisions: Sequence[Decision],
    *,
    prometheus: str,
    png_name: str,
) -> str:
    meta, status = rollout.get("metadata") or {}, status_of(rollout)
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}".strip("/")
    parts = [
        f"# Rollout report: {name}",
        _summary(rollout, life, prometheus),
        f"![figures over the rollout's life]({png_name})",
        "## Per track over the rollout's life",
        _table(measured, [(None, "whole life")]),
        *_no_data_notes(measured),
        "## Per step and track",
        _table(measured, [(i, s.label) for i, s in enumerate(segments)], segments),
        "## Machine hours saved (estimate)",
        _savings(measured),
        "## Decisions",
        _decisions(decisions, status),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _summary(rollout: Mapping[str, Any], life: tuple[float, float], prometheus: str) -> str:
    spec, status = rollout.get("spec") or {}, status_of(rollout)
    candidate = spec.get("candidate") or {}
    hours = (life[1] - life[0]) / 3600
    lines = [
        f"- phase: **{status.get('phase', 'Pending')}**"
        + (f" ({status['message']})" if status.get("message") else ""),
        f"- candidate: {candidate.get('image', '-')} (model {candidate.get('modelVersion', '-')})",
        f"- period: {when(life[0])} to {when(life[1])} ({hours:.2f} h)",
        f"- measured by: Prometheus at {prometheus}",
    ]
    return "\n".join(lines)


def _table(
    measured: Measurements,
    rows: Sequence[tuple[int | None, str]],
    segments: Sequence[Segment] = (),
) -> str:
    head = ["step", "from", "to", "track"] if segments else ["period", "track"]
    lines = [_row([*head, *(f.title for f in FIGURES)]), _row(["---"] * (len(head) + len(FIGURES)))]
    for index, label in rows:
        span = [] if index is None else [when(segments[index].start), when(segments[index].end)]
        for track in TRACKS:
            values = [cell(measured.value(index, track, f.name), f.fmt) for f in FIGURES]
            lines.append(_row([label, *span, track, *values]))
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _no_data_notes(measured: Measurements) -> list[str]:
    """Why figures had no data over the whole life, one line per reason."""
    by_reason: dict[str, list[str]] = {}
    for track in TRACKS:
        for f in FIGURES:
            value = measured.value(None, track, f.name)
            if isinstance(value, NoData):
                by_reason.setdefault(value.reason, []).append(f"{track} {f.title}")
    lines = [f"- {reason}: {_some(which)}" for reason, which in sorted(by_reason.items())]
    return ["No data over the whole life:\n" + "\n".join(lines)] if lines else []


def _some(items: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _savings(measured: Measurements) -> str:
    lines = [
        "Counted by the scheduler per answered request as `scheduler_machine_time_saved`: "
        "(makespan of the legacy rule's plan - makespan of the answer) x machines in the request, "
        "in the request's time unit, taken as minutes (the plants' convention), so hours = "
        "its change over the rollout's life (`delta()`, summed over pods) / 60; negative "
        "when the answers were longer than the legacy rule's. An estimate: it assumes every "
        "machine is busy for the whole makespan and that the plant would otherwise run the "
        "legacy rule's plan. "
        "Shadow answers were never used, so the shadow track's figure is what the candidate "
        "would have saved; the total counts the served tracks (stable, canary) that have data.",
        "",
    ]
    served_hours = []
    for track in TRACKS:
        saved = measured.value(None, track, "machine-time-saved")
        if isinstance(saved, NoData):
            lines.append(f"- {track}: {NO_DATA}")
            continue
        lines.append(f"- {track}: {saved / MINUTES_PER_HOUR:,.1f} machine hours")
        if track in SERVED:
            served_hours.append(saved / MINUTES_PER_HOUR)
    # A served track without data served nothing (a canary never weighted); none with data at
    # all is no data, not zero.
    served = f"{sum(served_hours):,.1f} machine hours" if served_hours else NO_DATA
    lines.append(f"- **served total: {served}**")
    return "\n".join(lines)


def _decisions(decisions: Sequence[Decision], status: Mapping[str, Any]) -> str:
    lines = [_row(["when", "what", "by"]), _row(["---"] * 3)]
    lines += [_row([d.at or "-", d.what, d.who]) for d in decisions]
    table = "\n".join(lines) if decisions else "No decisions recorded (status.history is empty)."
    extra = [table]
    if status.get("rollbackReason"):
        extra.append(f"**Rolled back:** {status['rollbackReason']}")
    verification = status.get("verification")
    if isinstance(verification, Mapping):
        extra.append(_verification(verification))
    verdict = status.get("shadowVerdict")
    if isinstance(verdict, Mapping):
        extra.append(_verdict(verdict))
    return "\n\n".join(extra)


def _verification(verification: Mapping[str, Any]) -> str:
    result = verification.get("result")
    lines = [
        "### Verification",
        f"- job: {verification.get('job', '-')}, state: {verification.get('state', '-')}",
    ]
    if verification.get("reason"):
        lines.append(f"- reason: {verification['reason']}")
    if isinstance(result, Mapping):
        for part in ("replay", "load", "model"):
            if isinstance(result.get(part), Mapping):
                lines.append(f"- {part}: `{json.dumps(result[part], sort_keys=True)}`")
    return "\n".join(lines)


def _verdict(verdict: Mapping[str, Any]) -> str:
    def num(key: str, fmt: str = ".3f") -> str:
        value = verdict.get(key)
        return format(value, fmt) if isinstance(value, int | float) else "-"

    return "\n".join(
        [
            "### Shadow verdict (sequential test)",
            f"- decision: **{verdict.get('decision', '-')}** after {verdict.get('pairs', 0)} pairs "
            f"({verdict.get('worse', 0)} worse, {verdict.get('better', 0)} better, "
            f"{verdict.get('equal', 0)} equal)",
            f"- share worse among differing pairs: {num('estimate')} "
            f"(95% CI {num('ciLow')} to {num('ciHigh')}); mean pair ratio {num('meanRatio')}; "
            f"log-likelihood ratio {num('llr')}",
        ]
    )
