"""rollout-operator's flags: refusals before anything connects."""

from __future__ import annotations

import pytest

from rollout_operator.cli import DEFAULT_WORKERS, build_parser, main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tick", "0"], "--tick must be positive"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-A", *argv]) == 2
    assert message in capsys.readouterr().err


def test_reconcile_threads_default_beyond_kopfs_cpus_plus_four() -> None:
    assert build_parser().parse_args(["-A"]).workers == DEFAULT_WORKERS >= 16
