"""Durations as people write them in a rollout spec: ``5d``, ``2h``, ``90s``, ``1h30m``, ``500ms``.

Whole numbers with units in decreasing order (d, h, m, s, ms), each unit at most once; the CRD's
schema checks the same pattern (``PATTERN``) so ``kubectl apply`` refuses what this refuses.
Fractions (``1.5h``) are not accepted: write ``1h30m``.
"""

from __future__ import annotations

import re

UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

# One optional group per unit, in order: "500ms" can only be read as milliseconds.
PATTERN = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
_REGEX = re.compile(PATTERN)
_PART = re.compile(r"([0-9]+)(ms|d|h|m|s)")


class DurationError(ValueError):
    """Text that is not a duration; the message quotes it."""


def parse(text: str) -> float:
    """Seconds in ``text`` (``"1h30m"`` -> 5400.0); DurationError naming the text otherwise."""
    if not isinstance(text, str) or not text or not _REGEX.fullmatch(text):
        raise DurationError(
            f"{text!r} is not a duration: use whole numbers with units d, h, m, s, ms in that "
            "order, e.g. 5d, 2h, 90s, 1h30m, 500ms"
        )
    return sum(int(number) * UNITS[unit] for number, unit in _PART.findall(text))


def format_seconds(seconds: float) -> str:
    """The shortest text ``parse`` reads back as ``seconds`` (rounded to milliseconds)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
