"""The settings sliders of a tab: raw component values -> validated `Controls` -> the engine's InversionConfig.

Errors are friendly `gr.Error`s naming the slider; per-tab defaults come from the engine (`engine.default_config`),
with the model's own task overrides (`ModelConfig.task_defaults`) applied.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import gradio as gr

import engine
from engine.tuning import TUNABLE_TASKS
from engine.types import LATENT_SPACES

from .tabs import PERCEPTUAL_NETS, TABS, user_error, warn

CONTROL_FIELDS = ("latent_space", "steps", "lr", "l1", "l2", "perceptual", "perceptual_net", "latent_dist",
                  "optimize_noise", "optimizer", "seed", "preview_every")
TUNING_TABS = tuple(tab for tab in TABS if tab in TUNABLE_TASKS)  # tabs with a "Pivotal tuning steps" slider


@dataclass(frozen=True)
class Controls:
    """The shared optimisation controls of a tab (same order as CONTROL_FIELDS)."""

    latent_space: str = "w+"
    steps: int = 200
    lr: float = 0.1
    l1: float = 0.0
    l2: float = 1.0
    perceptual: float = 0.3
    perceptual_net: str = "discriminator"
    latent_dist: float = 0.0
    optimize_noise: bool = False
    optimizer: str = "adam"
    seed: int = 0
    preview_every: int = 10


def defaults_task(tab: str) -> str:
    """The engine task whose defaults a tab uses (interpolation reconstructs its two images)."""
    return "reconstruct" if tab == "interpolate" else tab


def control_defaults(tab: str, arch: str = "stylegan2", overrides: engine.TaskDefaults | None = None) -> Controls:
    cfg = engine.default_config(defaults_task(tab), arch=arch, overrides=overrides)
    w = cfg.weights
    return Controls(latent_space=cfg.latent_space, steps=cfg.steps, lr=cfg.lr, l1=w.l1, l2=w.l2,
                    perceptual=w.perceptual,
                    perceptual_net=cfg.perceptual if cfg.perceptual in PERCEPTUAL_NETS else "discriminator",
                    latent_dist=w.latent_dist, optimize_noise=cfg.optimize_noise, optimizer=cfg.optimizer,
                    seed=cfg.seed, preview_every=cfg.preview_every)


def tuning_default(tab: str, arch: str = "stylegan2", overrides: engine.TaskDefaults | None = None) -> int:
    """The tab's default pivotal tuning steps: the model's own (`task_defaults[tab]['tuning']`), else the engine's
    (0); 0 for tabs without tuning."""
    if tab not in TUNABLE_TASKS:
        return 0
    return engine.default_config(tab, arch=arch, overrides=overrides).tuning.steps


def defaults_key(arch: str, overrides: engine.TaskDefaults | None = None) -> str:
    """What a model's defaults depend on, as a string a gr.State can hold (see `changed_defaults`)."""
    return json.dumps({"arch": arch, "task_defaults": overrides or {}}, sort_keys=True)


def changed_defaults(previous_key: str | None, arch: str, overrides: engine.TaskDefaults | None = None) -> tuple:
    """Every tab's controls (TABS order, CONTROL_FIELDS each), then the tuning steps of each tab with tuning
    (TABS order), after a change to a model with `arch` and `overrides`: its defaults where they differ from those
    of `previous_key` (everywhere when that is None or unreadable), gr.skip() (the user's settings stay) for the
    others."""
    try:
        old = json.loads(previous_key) if previous_key else None
    except (TypeError, ValueError):
        old = None
    out: list = []
    for tab in TABS:
        d = control_defaults(tab, arch, overrides)
        same = old is not None and control_defaults(tab, old["arch"], old["task_defaults"]) == d
        out.extend([gr.skip()] * len(CONTROL_FIELDS) if same else dataclasses.astuple(d))
    for tab in TUNING_TABS:
        steps = tuning_default(tab, arch, overrides)
        same = old is not None and tuning_default(tab, old["arch"], old["task_defaults"]) == steps
        out.append(gr.skip() if same else steps)
    return tuple(out)


def number(label: str, value: Any, *, integer: bool = False, minimum: float | None = None,
           strictly_positive: bool = False) -> float | int:
    """One numeric input (named `label` in errors) -> float, or int when `integer`; a gr.Error when invalid."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise user_error(f"'{label}' is empty: please enter a number.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise user_error(f"'{label}' must be a number, got {str(value)[:40]!r}.") from None
    if not math.isfinite(x):
        raise user_error(f"'{label}' must be a finite number.")
    if integer:
        if x != round(x):
            raise user_error(f"'{label}' must be a whole number, got {x:g}.")
        x = int(round(x))
    if strictly_positive and x <= 0:
        raise user_error(f"'{label}' must be greater than 0, got {x:g}.")
    if minimum is not None and x < minimum:
        raise user_error(f"'{label}' must be at least {minimum:g}, got {x:g}.")
    return x


def parse_controls(values: tuple) -> Controls:
    """Raw component values (CONTROL_FIELDS order) -> Controls, with friendly errors."""
    (space, steps, lr, l1, l2, perceptual, net, latent_dist, noise, optimizer, seed, every) = values
    if space not in LATENT_SPACES:
        raise user_error(f"Latent space must be one of {', '.join(LATENT_SPACES)}, got {space!r}.")
    if net not in PERCEPTUAL_NETS:
        raise user_error(f"Perceptual network must be one of {', '.join(PERCEPTUAL_NETS)}, got {net!r}.")
    if optimizer not in ("adam", "lbfgs"):
        raise user_error(f"Optimiser must be adam or lbfgs, got {optimizer!r}.")
    c = Controls(latent_space=space, steps=number("Steps", steps, integer=True, minimum=1),
                 lr=number("Learning rate", lr, strictly_positive=True),
                 l1=number("L1 weight", l1, minimum=0), l2=number("L2 weight", l2, minimum=0),
                 perceptual=number("Perceptual weight", perceptual, minimum=0), perceptual_net=net,
                 latent_dist=number("Latent-distance weight", latent_dist, minimum=0),
                 optimize_noise=bool(noise), optimizer=optimizer, seed=number("Seed", seed, integer=True),
                 preview_every=number("Preview every", every, integer=True, minimum=1))
    if c.l1 == 0 and c.l2 == 0 and (c.perceptual == 0 or c.perceptual_net == "none"):
        raise user_error("Set at least one of the L1, L2 or perceptual weights above 0 (and a perceptual network "
                         "other than 'none' for the latter): otherwise nothing ties the result to your image.")
    return c


def build_config(tab: str, arch: str, c: Controls, *, max_steps: int, notices: list[str],
                 overrides: engine.TaskDefaults | None = None) -> engine.InversionConfig:
    """The engine config of a run of `tab`: its defaults with the controls applied, steps capped at `max_steps`
    (the server's limit; a notice and a warning say so)."""
    steps = c.steps
    if steps > max_steps:
        msg = f"Steps limited to {max_steps} on this server (you asked for {steps})."
        notices.append(msg)
        warn(msg)
        steps = max_steps
    base = engine.default_config(defaults_task(tab), arch=arch, overrides=overrides)
    weights = dataclasses.replace(base.weights, l1=float(c.l1), l2=float(c.l2), perceptual=float(c.perceptual),
                                  latent_dist=float(c.latent_dist))
    cfg = base.replace(latent_space=c.latent_space, steps=int(steps), lr=float(c.lr), optimizer=c.optimizer,
                       weights=weights, perceptual=c.perceptual_net, optimize_noise=c.optimize_noise,
                       seed=int(c.seed), preview_every=int(c.preview_every),
                       max_steps=max(max_steps, base.max_steps))
    cfg.validate()
    return cfg


def with_tuning(task: str, cfg: engine.InversionConfig, tune_steps: dict[str, int], *, max_steps: int,
                notices: list[str]) -> engine.InversionConfig:
    """The tab's tuning steps in `cfg`: the session's `tune_steps[task]` (the Settings slider) where set, else
    `cfg`'s own (the model's default), clamped to `max_steps`; 0 for tasks without tuning (and interpolation)."""
    steps = tune_steps.get(task, cfg.tuning.steps) if task in TUNABLE_TASKS else 0
    if steps > max_steps:
        notices.append(f"Tuning steps limited to {max_steps} on this server.")
        steps = max_steps
    return cfg.replace(tuning=dataclasses.replace(cfg.tuning, steps=steps))
