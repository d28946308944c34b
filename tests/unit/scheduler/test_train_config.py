"""Training recipe parsing and the learning-rate schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobshop_scheduler.rl.config import ConfigError, load_config
from jobshop_scheduler.rl.train import learning_rate_schedule

pytestmark = pytest.mark.unit

RECIPE = """
[ppo]
rows = 170
final_learning_rate = 0.00003

[eval]
flexible = 3
flexible_jobs = 120

[[curriculum]]
until = 1.0
jobs = [10, 20]
machines = [5, 10]
flexible_share = 0.5
flexible_jobs = [50, 170]
"""


def test_recipe_keys_reach_the_config(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE)
    config = load_config(path)
    assert config.ppo.final_learning_rate == pytest.approx(3e-5)
    assert (config.eval.flexible, config.eval.flexible_jobs) == (3, 120)
    assert config.curriculum[0].flexible_jobs == (50, 170)


def test_rows_must_hold_the_largest_training_instance(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.replace("rows = 170", "rows = 64"))
    with pytest.raises(ConfigError, match="rows=64"):
        load_config(path)


def test_learning_rate_decays_linearly_to_the_final_rate() -> None:
    rate = learning_rate_schedule(3e-4, 3e-5)
    assert callable(rate)
    assert rate(1.0) == pytest.approx(3e-4)  # SB3 counts progress remaining: 1 at the start
    assert rate(0.5) == pytest.approx(1.65e-4)
    assert rate(0.0) == pytest.approx(3e-5)
    assert learning_rate_schedule(3e-4, None) == pytest.approx(3e-4)
