"""Evolution strategies on the window scorer's last layers, for its greedy makespan itself.

Rollout labels stopped paying (docs/benchmark.md, "What rollout labels cannot teach"): fitting
them moves the scorer away from where greedy makespan put it. This searches the scorer's weights
for greedy makespan directly. Each generation draws a fresh batch of training shops (the
families recipe's mix), perturbs the searched weights with antithetic Gaussian noise, runs the
greedy pass of every perturbed scorer on the batch, and steps along the rank-weighted noise
(OpenAI-ES). The searched weights are the score layer's hidden bias and output weights
(`window_score.0.bias`, `window_score.2.weight`): they re-weigh what the scorer already
computes, 128 numbers, few enough for a small population.

    uv run python docs/experiments/es_window.py --init models/full_production/final_model.zip \\
        --out /tmp/es.zip --generations 80 --pairs 16 --batch 96 --validation 512 --sigma 0.2

The output is a model zip; `schedctl train` with a recipe that runs no stage
(rl/window_widening_as_shipped.toml) and `--init` of it writes its card and serving files.
It did not help (docs/benchmark.md, "What ten instances can tell").
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file
from tqdm import tqdm

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.rl.config import load_config
from jobshop_scheduler.rl.fast_policy import FastScorer, greedy_schedule
from jobshop_scheduler.rl.self_label import mixture_instance

RECIPE = Path(__file__).parents[2] / (
    "scheduler_service/src/jobshop_scheduler/rl/self_label_rollout_families.toml"
)
SEARCHED = ("mlp_extractor.window_score.0.bias", "mlp_extractor.window_score.2.weight")

_worker: dict[str, FastScorer] = {}  # each pool worker's --init scorer
_batches: dict[int, list[CompiledProblem]] = {}


def shops(seed: int, count: int) -> list[CompiledProblem]:
    config = load_config(RECIPE).self_label
    rng = np.random.default_rng(seed)
    return [mixture_instance(config, rng) for _ in range(count)]


def with_params(base: FastScorer, theta: np.ndarray) -> FastScorer:
    window = base.window_scorer
    assert window is not None
    width = window.c1.shape[0]
    c1 = theta[:width].astype(np.float32)
    s2 = theta[width:].astype(np.float32)
    return dataclasses.replace(base, window_scorer=dataclasses.replace(window, c1=c1, s2=s2))


def _init(base: FastScorer) -> None:
    _worker["base"] = base


def makespans(task: tuple[np.ndarray, int, int]) -> np.ndarray:
    theta, seed, count = task
    if seed not in _batches:
        _batches.clear()
        _batches[seed] = shops(seed, count)
    scorer = with_params(_worker["base"], theta)
    return np.array([greedy_schedule(cp, scorer).makespan for cp in _batches[seed]], float)


def ranks(values: np.ndarray) -> np.ndarray:
    """Centred ranks in [-0.5, 0.5]: the best (shortest) gets +0.5."""
    order = np.empty(len(values))
    order[np.argsort(-values)] = np.arange(len(values))
    return order / (len(values) - 1) - 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--generations", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=12, help="antithetic pairs per generation")
    parser.add_argument("--batch", type=int, default=48, help="training shops per generation")
    parser.add_argument("--sigma", type=float, default=0.05, help="noise, relative to each RMS")
    parser.add_argument("--rate", type=float, default=0.5, help="step, in units of sigma")
    parser.add_argument("--validation", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    _, params, _ = load_from_zip_file(str(args.init), device="cpu", load_data=False)
    base = FastScorer.from_state_dict(params["policy"])
    window = base.window_scorer
    assert window is not None, "the model has no window scorer"
    theta = np.concatenate([window.c1, window.s2]).astype(np.float64)
    width = window.c1.shape[0]
    rms = [np.sqrt(np.mean(block**2)) for block in (window.c1, window.s2)]
    sigma = args.sigma * np.repeat(rms, width)
    rng = np.random.default_rng(args.seed)
    val_seed = 10_000_000 + args.seed
    started = time.monotonic()
    with Pool(args.workers, initializer=_init, initargs=(base,)) as pool:

        def validation_spans(t: np.ndarray) -> np.ndarray:
            share = args.validation // args.workers
            chunks = [(t, val_seed + i, share) for i in range(args.workers)]
            return np.concatenate(pool.map(makespans, chunks))

        reference = validation_spans(theta)
        best, best_theta = 1.0, theta.copy()
        print(f"generation 0: validation 1.0000 (the --init model, {len(reference)} shops)")
        bar = tqdm(range(1, args.generations + 1), unit="gen")
        for generation in bar:
            noise = rng.standard_normal((args.pairs, theta.size))
            members = [theta + sigma * e for e in noise] + [theta - sigma * e for e in noise]
            seed = int(rng.integers(2**31))
            tasks = [(m, seed, args.batch) for m in [theta, *members]]
            spans = pool.map(makespans, tasks)
            centre = spans[0]
            fitness = np.array([np.mean(s / centre) for s in spans[1:]])
            shaped = ranks(fitness)
            step = (shaped[: args.pairs] - shaped[args.pairs :]) @ noise / (2 * args.pairs)
            theta = theta + args.rate * sigma * step / max(np.std(shaped), 1e-9)
            bar.set_postfix(best_member=f"{fitness.min():.4f}", mean=f"{fitness.mean():.4f}")
            if generation % args.eval_every == 0 or generation == args.generations:
                value = float(np.mean(validation_spans(theta) / reference))
                if value < best:
                    best, best_theta = value, theta.copy()
                tqdm.write(f"generation {generation}: validation {value:.4f} (best {best:.4f}),"
                           f" {time.monotonic() - started:.0f} s")  # fmt: skip
    save(args.init, args.out, best_theta, width)
    print(f"wrote {args.out}: validation {best:.4f} of the --init model's makespans")


def save(init: Path, out: Path, theta: np.ndarray, width: int) -> None:
    """``init``'s zip with the searched weights replaced."""
    data, params, _ = load_from_zip_file(str(init), device="cpu", load_data=True)
    policy: dict[str, Any] = params["policy"]
    for key, values in zip(SEARCHED, (theta[:width], theta[width:][None, :]), strict=True):
        policy[key] = torch.tensor(values, dtype=policy[key].dtype)
    save_to_zip_file(out, data=data, params=params)


if __name__ == "__main__":
    main()
