"""Command-line options that override a task's default `InversionConfig`, shared by `engine.cli` and
`engine.gallery` so that a new loss weight or setting cannot be forgotten in one of them.

`add_config_options(parser)` adds the options (all default to None = keep the task's default);
`config_from_args(args, task=, arch=)` returns the task's default config with the given ones applied, validated.
"""
from __future__ import annotations

import argparse
import dataclasses
import math

from .tasks import TaskDefaults, default_config
from .tuning import TUNABLE_TASKS
from .types import PERCEPTUALS, EngineError, InversionConfig

# `LossWeights` fields a user may set from the command line, as (field, help); every field of LossWeights is here
# (a test checks it), so a new loss term gets a flag in both tools at once.
WEIGHT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("l1", "L1 pixel loss weight"),
    ("l2", "L2 pixel loss weight"),
    ("perceptual", "perceptual loss weight"),
    ("latent_dist", "latent-distance regulariser weight"),
    ("layer_spread", "w+ only: weight keeping the per-layer latents together"),
    ("realism", "discriminator realism weight"),
    ("noise_reg", "noise-map regulariser weight (with --optimize-noise)"),
)

# Options copied straight into an InversionConfig field, as argparse dest -> field (`--perceptual` is the loss
# weight, so the network's option is `--perceptual-net`).
_SETTINGS = {"steps": "steps", "lr": "lr", "latent_space": "latent_space", "optimizer": "optimizer",
             "init": "init", "num_starts": "num_starts", "start_psi": "start_psi", "perceptual_net": "perceptual"}


def add_config_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the override options to `p` (in place) and return it."""
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--latent-space", choices=("z", "w", "w+"))
    p.add_argument("--optimizer", choices=("adam", "lbfgs"))
    p.add_argument("--init", choices=("mean", "best-of-k"),
                   help="start at the average latent, or at the best of --num-starts random ones drawn from the seed")
    p.add_argument("--num-starts", type=int, help="best-of-k: how many random starts to score")
    p.add_argument("--start-psi", type=float, help="best-of-k: pull the random starts towards the average "
                   "(1: plain samples, 0: the average)")
    p.add_argument("--perceptual-net", choices=PERCEPTUALS)
    for name, text in WEIGHT_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=float, help=text)
    p.add_argument("--optimize-noise", action="store_true")
    p.add_argument("--tune-steps", type=int, help="pivotal tuning steps after the latent search (0 = off; "
                   "not for scribble; interpolate morphs with the untuned generator)")
    p.add_argument("--tune-lr", type=float, help="pivotal tuning learning rate")
    return p


def config_from_args(a: argparse.Namespace, *, task: str, arch: str,
                     overrides: TaskDefaults | None = None) -> InversionConfig:
    """The task's default config (the model's `overrides` included) with every option given in `a` applied;
    raises EngineError on a bad value."""
    cfg = default_config(task, arch=arch, overrides=overrides)
    weights = {name: getattr(a, name) for name, _ in WEIGHT_OPTIONS if getattr(a, name) is not None}
    for k, v in weights.items():
        if not math.isfinite(v) or v < 0:
            raise EngineError(f"--{k.replace('_', '-')} must be a finite number >= 0, got {v}")
    changes: dict = {field: getattr(a, dest) for dest, field in _SETTINGS.items() if getattr(a, dest) is not None}
    if a.optimize_noise:
        changes["optimize_noise"] = True
    tuning = {k: v for k, v in (("steps", a.tune_steps), ("lr", a.tune_lr)) if v is not None}
    if tuning.get("steps") and task not in TUNABLE_TASKS:
        raise EngineError(f"--tune-steps is for {', '.join(TUNABLE_TASKS)}: {task} constrains too few pixels")
    cfg = cfg.replace(weights=dataclasses.replace(cfg.weights, **weights),
                      tuning=dataclasses.replace(cfg.tuning, **tuning), **changes)
    cfg.validate()
    return cfg

