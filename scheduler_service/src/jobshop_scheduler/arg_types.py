"""Number types for argparse flags: a bad value is a one-line usage error naming the flag."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_at_least(minimum: int) -> Callable[[str], int]:
    """An integer flag of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def positive_number(text: str) -> float:
    """A number flag above 0 (durations, rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


non_negative = whole_at_least(0)
positive = whole_at_least(1)
