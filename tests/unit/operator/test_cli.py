"""rollout-operator's flags: refusals before anything connects."""

from __future__ import annotations

import concurrent.futures

import pytest

from rollout_operator.cli import DEFAULT_WORKERS, _releasing, build_parser, main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tick", "0"], "--tick must be positive"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--drain-seconds", "-1"], "--drain-seconds must not be negative"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-A", *argv]) == 2
    assert message in capsys.readouterr().err


def test_reconcile_threads_default_beyond_kopfs_cpus_plus_four() -> None:
    assert build_parser().parse_args(["-A"]).workers == DEFAULT_WORKERS >= 16


def test_kopfs_cleanup_releases_the_stop_flag_a_signal_to_kopf_left_unset() -> None:
    """kopf's own SIGTERM handler stops it without our flag; a thread waits on that flag."""
    flag: concurrent.futures.Future[int] = concurrent.futures.Future()
    release = _releasing(flag)
    release(logger=None)
    assert flag.result(timeout=0) == 0
    signalled: concurrent.futures.Future[int] = concurrent.futures.Future()
    signalled.set_result(15)  # our handler ran first (SIGTERM before kopf started)
    _releasing(signalled)()
    assert signalled.result(timeout=0) == 15
