"""`schedctl train`: train a policy from a config and ship it with its model card."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import sys
from pathlib import Path

from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.rl.config import ConfigError, load_config
from jobshop_scheduler.rl.model_store import (
    MODEL_NAME,
    ModelCard,
    ModelError,
    code_series,
    feature_schema,
    sha256_of,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="training TOML (default: the shipped recipe, rl/default_train.toml)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="folder for final_model.zip and its card (default: %(default)s)",
    )
    parser.add_argument("--timesteps", type=int, help="override ppo.total_timesteps")
    parser.add_argument("--seed", type=int, help="override ppo.seed")
    parser.add_argument(
        "--init",
        type=Path,
        action="append",
        default=[],
        metavar="MODEL_ZIP",
        help="start from this model's weights (fine-tuning) instead of random ones; given "
        "more than once, from the models' average, tensor by tensor (a model soup: they must "
        "share one architecture; a model given twice counts twice)",
    )
    parser.add_argument(
        "--model-version",
        help="version for the model card "
        "(default: the date and the first 8 hex digits of the model's sha256)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the [self_label] stage from the checkpoint in --out (written every "
        "self_label.checkpoint_every steps); self_label.steps may be raised to run longer",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from jobshop_scheduler.rl.train import train  # noqa: PLC0415 - imports torch
    from jobshop_scheduler.search.teacher import TabuTeacher  # noqa: PLC0415

    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"schedctl train: {exc}", file=sys.stderr)
        return 2
    ppo = config.ppo
    if args.timesteps is not None:
        ppo = dataclasses.replace(ppo, total_timesteps=args.timesteps)
    if args.seed is not None:
        ppo = dataclasses.replace(ppo, seed=args.seed)
    config = dataclasses.replace(config, ppo=ppo)
    for init in args.init:
        if not init.is_file():
            print(f"schedctl train: --init {init}: no such model file", file=sys.stderr)
            return 2
    try:
        summary = train(
            config,
            args.out,
            quiet=args.quiet,
            init=args.init,
            resume=args.resume,
            teacher=TabuTeacher(config.self_label.teacher_iterations),
        )
    except ConfigError as exc:  # a refused --resume, --init or stage combination
        print(f"schedctl train: {exc}", file=sys.stderr)
        return 2
    write_card(args.out, summary, args.model_version)
    best = summary["best_validation_ratio_to_best_rule"]
    validated = "no validation" if best is None else f"validation ratio to best rule {best:.4f}"
    seconds = summary["wall_seconds"]
    print(f"model written to {args.out / MODEL_NAME} ({validated}, {seconds:.0f} s)")
    return 0


def write_card(out: Path, summary: dict[str, object], version: str | None) -> ModelCard:
    """The card for ``out/final_model.zip``, then the serving files it also vouches for."""
    from jobshop_scheduler.rl.ship import export_serving_files  # noqa: PLC0415 - SB3

    digest = sha256_of(out / MODEL_NAME)
    now = dt.datetime.now(dt.UTC)
    card = ModelCard(
        version=version or f"{now:%Y.%m.%d}-{digest[:8]}",
        sha256=digest,
        feature_schema=feature_schema(),
        code_series=code_series(),
        created_at=now.isoformat(timespec="seconds"),
        training={**summary, "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only"},
    )
    card.write(out)
    return export_serving_files(out)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write policy_weights.npz (the actor's tensors as plain arrays) and "
        "reference_outputs.npz (SB3's scores and choices on fixed states) beside "
        "final_model.zip, and their sha256 into the model card: the files a server loads "
        "without torch. Training does this itself; use it for a zip that lacks them."
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="folder with final_model.zip and model_card.json (default: %(default)s)",
    )


def run_export(args: argparse.Namespace) -> int:
    from jobshop_scheduler.rl.ship import export_serving_files  # noqa: PLC0415 - SB3

    try:
        card = export_serving_files(args.model_dir)
    except ModelError as exc:
        print(f"schedctl export-model: {exc}", file=sys.stderr)
        return 2
    print(
        f"serving files of model {card.version} written to {args.model_dir}: weights "
        f"{card.weights_sha256[:12]}…, recorded outputs {card.reference_sha256[:12]}…"
    )
    return 0
