"""The rollout object read as a story: its life, its steps and the decisions taken in it.

Pure functions of the object's JSON (what ``kubectl get -o json`` shows), so the report can be
built from a saved object as well as from the API. Every status field is optional here: a
rollout written by an older operator has no ``history``, ``signOffs``, ``verification`` or
``shadowVerdict``, and the report then says less instead of failing.

A *segment* is the time between two ``status.history`` entries (each entry is appended when the
phase or the step changes): from one entry's ``at`` to the next one's, the last open until the
rollout ended (a terminal phase) or until now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TERMINAL = ("Succeeded", "RolledBack", "Failed", "Invalid")
Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Segment:
    """One phase/step of the rollout, ``start`` to ``end`` in epoch seconds."""

    phase: str
    step: int | None
    weight: int
    mirror_percent: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def label(self) -> str:
        step = f" step {self.step + 1}" if self.step is not None else ""
        traffic = f"{self.weight}%"
        if self.mirror_percent:
            traffic += f", mirror {self.mirror_percent}%"
        return f"{self.phase}{step} ({traffic})"


@dataclass(frozen=True)
class Decision:
    """Something decided in the rollout: when, what, and by whom (as far as the object says)."""

    at: str
    what: str
    who: str


def parse_time(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 time, None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def status_of(rollout: Obj) -> Obj:
    return rollout.get("status") or {}


def history(rollout: Obj) -> list[Obj]:
    """``status.history`` entries that carry a readable time, oldest first."""
    entries = status_of(rollout).get("history") or []
    timed = [e for e in entries if isinstance(e, Mapping) and parse_time(e.get("at")) is not None]
    return sorted(timed, key=lambda e: parse_time(e["at"]) or 0.0)


def life(rollout: Obj, now: float) -> tuple[float, float]:
    """The rollout's span: creation to its last history entry when it has ended, else to now."""
    created = parse_time((rollout.get("metadata") or {}).get("creationTimestamp"))
    entries = history(rollout)
    start = created if created is not None else parse_time(entries[0]["at"]) if entries else now
    end = now
    if entries and entries[-1].get("phase") in TERMINAL:
        end = parse_time(entries[-1]["at"]) or now
    return min(start or now, end), end


def segments(rollout: Obj, now: float) -> list[Segment]:
    """The non-terminal phases and steps of ``status.history``; without a history, one segment
    over the whole life in the current phase."""
    start, end = life(rollout, now)
    entries = history(rollout)
    if not entries:
        status = status_of(rollout)
        return [_segment(status, start, end)]
    found = []
    for entry, following in zip(entries, [*entries[1:], None], strict=True):
        if entry.get("phase") in TERMINAL:
            continue
        seg_start = parse_time(entry["at"]) or start
        seg_end = parse_time(following["at"]) if following is not None else end
        found.append(_segment(entry, seg_start, max(seg_start, seg_end or end)))
    return found


def _segment(entry: Obj, start: float, end: float) -> Segment:
    step = entry.get("step")
    return Segment(
        phase=str(entry.get("phase") or "Pending"),
        step=step if isinstance(step, int) else None,
        weight=_int(entry.get("weight")),
        mirror_percent=_int(entry.get("mirrorPercent")),
        start=start,
        end=end,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def decisions(rollout: Obj) -> list[Decision]:
    """Phase changes with their reasons, sign-offs with their users, and the last command."""
    status = status_of(rollout)
    found = [
        Decision(str(e["at"]), _change(e), f"operator ({e.get('reason') or 'no reason'})")
        for e in history(rollout)
    ]
    for sign in _mappings(status.get("signOffs")):
        step = sign.get("step")
        where = f" at step {step + 1}" if isinstance(step, int) else ""
        found.append(
            Decision(
                str(sign.get("at") or ""),
                f"sign-off as {sign.get('role', '?')}{where}",
                str(sign.get("user") or "?"),
            )
        )
    command = str(status.get("lastCommand") or "")
    if command:
        verb, _, ident = command.partition("@")
        stamp = _stamp(ident.split("-")[0])
        at = dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat() if stamp else ""
        # The annotation does not name its writer; the API server's audit log does.
        found.append(Decision(at, f"last command: {verb} ({command})", "not recorded"))
    return sorted(found, key=lambda d: parse_time(d.at) or 0.0)


def _change(entry: Obj) -> str:
    step = entry.get("step")
    where = f" step {step + 1}" if isinstance(step, int) else ""
    text = f"{entry.get('phase', '?')}{where}"
    if entry.get("message"):
        text += f": {entry['message']}"
    return text


def _stamp(text: str) -> float:
    """Epoch seconds of a command's ``YYYYmmddTHHMMSSZ`` stamp (0 when it is not one)."""
    try:
        return dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0.0


def _mappings(value: object) -> Sequence[Obj]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
