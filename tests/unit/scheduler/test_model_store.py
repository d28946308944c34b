"""Model cards: a model is only served when its bytes, features and code version check out."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
from jobshop_scheduler.rl.weights import WEIGHTS_NAME
from tests.tamper import resign

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


def test_a_card_without_serving_checksums_is_refused(model_copy: Path) -> None:
    edit_card(model_copy, weights_sha256="")  # a card written before the serving files
    with pytest.raises(ModelError, match=f"no checksum for {WEIGHTS_NAME}.*export-model"):
        load_model(model_copy)


def test_an_unreadable_weights_file_is_refused(model_copy: Path) -> None:
    (model_copy / WEIGHTS_NAME).write_bytes(b"not an array file")
    resign(model_copy)
    with pytest.raises(ModelError, match=f"{WEIGHTS_NAME} is not a readable array file"):
        load_model(model_copy)


def test_weights_missing_a_tensor_are_refused(model_copy: Path) -> None:
    with np.load(model_copy / WEIGHTS_NAME) as data:
        arrays = {k: data[k] for k in data.files if k != "mlp_extractor.score.0.bias"}
    np.savez(model_copy / WEIGHTS_NAME, **arrays)
    resign(model_copy)
    with pytest.raises(ModelError, match=r"lacks the tensor mlp_extractor\.score\.0\.bias"):
        load_model(model_copy)


SERVING_PATH = """
import sys
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.service import server
from jobshop_scheduler.service.readiness import load_checked_model

model = load_checked_model(DEFAULT_MODEL_DIR, warm_search=True)
plan = Planner(model, time_budget_ms=50).plan(production_like(30, seed=1), "ppo")
assert plan.policy_used == "ppo", plan.fallback_reason
training = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "matplotlib")
print(sorted(m for m in sys.modules if m.split(".")[0] in training))
"""


def test_the_serving_path_never_imports_the_training_stack() -> None:
    """Server module, readiness gate, planner with search: a 500 MB stack nobody serves from.

    A fresh interpreter: this test process has torch loaded by other tests."""
    done = subprocess.run(
        [sys.executable, "-c", SERVING_PATH], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
