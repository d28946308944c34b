"""Model cards: a model is only served when its bytes, features and code version check out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from jobshop_scheduler.domain.validator import validate
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.instances import load_taillard
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.fast_policy import greedy_schedule
from jobshop_scheduler.rl.model_store import (
    CARD_NAME,
    MODEL_NAME,
    ModelCard,
    ModelError,
    load_model,
)

pytestmark = pytest.mark.unit


def edit_card(directory: Path, **changes: str) -> None:
    card = ModelCard.read(directory)
    dataclasses.replace(card, **changes).write(directory)


def test_shipped_model_loads_and_schedules_validly() -> None:
    loaded = load_model()
    assert loaded.card.version
    for problem in (load_taillard("ta01"), production_like(170, seed=7)):
        state = greedy_schedule(compile_problem(problem), loaded.scorer)
        schedule = compile_problem(problem).to_schedule(state.op_machine, state.op_start)
        report = validate(problem, schedule)
        assert report.ok, report.violations[:3]
        assert report.completion_rate == 1.0


def test_missing_file_is_refused(model_copy: Path) -> None:
    (model_copy / MODEL_NAME).unlink()
    with pytest.raises(ModelError, match="model file missing"):
        load_model(model_copy)


def test_checksum_mismatch_is_refused(model_copy: Path) -> None:
    with (model_copy / MODEL_NAME).open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(model_copy)


def test_incompatible_code_version_is_refused(model_copy: Path) -> None:
    edit_card(model_copy, code_series="9.9")
    with pytest.raises(ModelError, match=r"for code 9\.9\.x"):
        load_model(model_copy)


def test_other_feature_schema_is_refused(model_copy: Path) -> None:
    edit_card(model_copy, feature_schema="0123456789abcdef")
    with pytest.raises(ModelError, match="feature schema 0123456789abcdef"):
        load_model(model_copy)


def test_malformed_card_is_refused(model_copy: Path) -> None:
    (model_copy / CARD_NAME).write_text(json.dumps({"version": "x"}))
    with pytest.raises(ModelError, match="malformed"):
        load_model(model_copy)
