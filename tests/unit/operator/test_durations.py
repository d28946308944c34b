"""Durations as written in a rollout spec, and the CRD's pattern that must agree with them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout_operator import durations

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5d", 432000.0),
        ("2h", 7200.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d2h3m4s5ms", 93784.005),
        ("0s", 0.0),
        ("60s", 60.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "d", "1.5h", "30m1h", "5 d", "2days", "-1s", "1h1h"])
def test_parse_refuses_and_names_the_text(text: str) -> None:
    with pytest.raises(durations.DurationError, match=re.escape(repr(text))):
        durations.parse(text)


@given(st.integers(min_value=0, max_value=10**10))
def test_format_reads_back(millis: int) -> None:
    text = durations.format_seconds(millis / 1000)
    assert durations.parse(text) == pytest.approx(millis / 1000)


def test_format_is_short() -> None:
    assert durations.format_seconds(5400) == "1h30m"
    assert durations.format_seconds(0.25) == "250ms"
    assert durations.format_seconds(2 * 86400) == "2d"
