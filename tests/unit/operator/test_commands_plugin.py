"""The command annotation (acted on once) and the plugin's table."""

from __future__ import annotations

import datetime as dt

import pytest

from rollout_operator import commands
from rollout_operator.kubectl_plugin import age, build_parser, row, table
from rollout_operator.model import Commands

pytestmark = pytest.mark.unit


def test_a_command_is_pending_until_the_status_records_it() -> None:
    value = commands.encode("approve")
    annotations = {commands.ANNOTATION: value}
    assert commands.pending(annotations, {}) == value
    assert commands.to_commands(value) == Commands(approve=True)
    assert commands.pending(annotations, {"lastCommand": value}) is None
    again = commands.encode("approve")
    assert again != value  # a second approve is a new command
    assert commands.pending({commands.ANNOTATION: again}, {"lastCommand": value}) == again


def test_no_annotation_means_no_command() -> None:
    assert commands.pending(None, None) is None
    assert commands.to_commands(None) == Commands()


@pytest.mark.parametrize("value", ["approve", "launch@1", "@x", "abort@"])
def test_malformed_annotations_are_refused_with_the_value(value: str) -> None:
    with pytest.raises(commands.CommandError, match="verb"):
        commands.decode(value)


def test_unknown_verbs_cannot_be_encoded() -> None:
    with pytest.raises(commands.CommandError, match="unknown command 'launch'"):
        commands.encode("launch")


def test_patch_sets_only_the_annotation() -> None:
    patch = commands.patch_for("abort")
    assert list(patch) == ["metadata"]
    assert commands.decode(patch["metadata"]["annotations"][commands.ANNOTATION]) == "abort"


def test_age_is_kubectl_style() -> None:
    now = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
    assert age("2026-11-29T11:59:18Z", now) == "42s"
    assert age("2026-11-29T09:00:00Z", now) == "3h"
    assert age("2026-11-27T12:00:00Z", now) == "2d"
    assert age(None, now) == "-"


def test_rows_show_phase_step_weight_and_the_rollback_reason() -> None:
    item = {
        "metadata": {"namespace": "plant", "name": "sched-v2", "creationTimestamp": None},
        "spec": {"candidate": {"image": "reg/scheduler:1.5"}, "steps": [{}, {}, {}]},
        "status": {"phase": "RolledBack", "step": 1, "weight": 0,
                   "rollbackReason": "completion-rate 0.84 < 0.90 for 2 intervals"},
    }  # fmt: skip
    cells = row(item)
    assert cells[:6] == ("plant", "sched-v2", "RolledBack", "2/3", "0%", "reg/scheduler:1.5")
    assert cells[7].startswith("completion-rate 0.84")
    text = table([cells])
    assert text.splitlines()[0].split()[:4] == ["NAMESPACE", "NAME", "PHASE", "STEP"]


def test_a_rollout_without_status_is_pending() -> None:
    cells = row({"metadata": {"name": "x"}, "spec": {}})
    assert cells[2] == "Pending" and cells[3] == "-" and cells[4] == "-"


def test_every_command_is_in_the_cli() -> None:
    parser = build_parser()
    for verb in commands.VERBS:
        args = parser.parse_args(["-n", "ns", verb, "r1"])
        assert (args.verb, args.name, args.namespace) == (verb, "r1", "ns")
