"""Editing tasks as operator chains plus sensible default configurations per task and architecture.

A model may carry its own per-task overrides of these defaults (`ModelConfig.task_defaults`, chosen with that
model's gallery): `{task: {setting: value}}`, a setting being an InversionConfig field (`latent_space`, `lr`,
`steps`, `perceptual` (the network) ...), `weights`, a mapping of LossWeights fields (`latent_dist`,
`perceptual` (the weight) ...), or `tuning`, a mapping of TuningConfig fields (`steps`: pivotal tuning on by
default); `default_config(task, overrides=...)` applies them and rejects unknown settings.

`request_for_task(task, target, ...)` builds an InversionRequest: `target` is uint8 RGB `[R, R, 3]`;
`painted` is the user's bool mask `[R, R]` (True = painted: the hole for 'inpaint', the strokes for
'scribble'), converted here to the engine's known-pixel polarity.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .types import (TASKS, EngineError, InversionConfig, InversionRequest, LossWeights, OperatorSpec, TuningConfig,
                    known_from_fill_mask, known_from_strokes)


def operators_for(task: str, *, kernel_size: int = 9, sigma: float = 2.0, factor: int = 4) -> tuple[OperatorSpec, ...]:
    """The degradation chain of a task."""
    table = {
        "reconstruct": (OperatorSpec("identity"),),
        "inpaint": (OperatorSpec("mask"),),
        "colorize": (OperatorSpec("grayscale"),),
        "deblur": (OperatorSpec("blur", kernel_size=kernel_size, sigma=sigma),),
        "superres": (OperatorSpec("downsample", factor=factor),),
        "scribble": (OperatorSpec("scribble"),),
    }
    if task not in table:
        raise EngineError(f"unknown task {task!r}; expected one of {TASKS}")
    return table[task]


TaskDefaults = Mapping[str, Mapping[str, Any]]
_NESTED = {"weights": frozenset(f.name for f in dataclasses.fields(LossWeights)),
           "tuning": frozenset(f.name for f in dataclasses.fields(TuningConfig))}
_OVERRIDABLE = frozenset(f.name for f in dataclasses.fields(InversionConfig)) - {"max_steps"} - set(_NESTED)


def default_config(task: str, *, arch: str = "stylegan2", overrides: TaskDefaults | None = None) -> InversionConfig:
    """The engine's defaults for `task` on `arch`, with the model's own `overrides[task]` (if any) applied."""
    cfg = _engine_default(task, arch=arch)
    if overrides and task in overrides:
        cfg = with_overrides(cfg, overrides[task], what=f"task_defaults[{task!r}]")
    return cfg


def with_overrides(cfg: InversionConfig, settings: Mapping[str, Any], *,
                   what: str = "task defaults") -> InversionConfig:
    """`cfg` with `settings` replaced: InversionConfig field names, `weights` a mapping of LossWeights field names
    and `tuning` one of TuningConfig field names; EngineError naming `what` on an unknown name or an invalid value."""
    if not isinstance(settings, Mapping):
        raise EngineError(f"{what}: must be a mapping of setting names to values, got {settings!r}")
    unknown = sorted(set(settings) - _OVERRIDABLE - set(_NESTED))
    for name, fields in _NESTED.items():
        nested = settings.get(name, {})
        if not isinstance(nested, Mapping):
            raise EngineError(f"{what}: {name} must be a mapping of {sorted(fields)}, got {nested!r}")
        unknown += sorted(f"{name}.{k}" for k in set(nested) - fields)
    if unknown:
        raise EngineError(f"{what}: unknown setting(s) {unknown}; expected some of {sorted(_OVERRIDABLE)}, "
                          + ", ".join(f"{n} of {sorted(f)}" for n, f in _NESTED.items()))
    changes = {k: v for k, v in settings.items() if k not in _NESTED}
    changes.update({k: dataclasses.replace(getattr(cfg, k), **settings[k]) for k in _NESTED if k in settings})
    out = cfg.replace(**changes)
    try:
        out.validate()
    except EngineError as exc:
        raise EngineError(f"{what}: {exc}") from None
    return out


def _engine_default(task: str, *, arch: str) -> InversionConfig:
    """Defaults that work on the bundled 64 px models (w+ for fidelity; w + regulariser for scribbles)."""
    if arch == "dcgan":
        return InversionConfig(latent_space="z", steps=200, lr=0.05, initial_noise_factor=0.0,
                               weights=LossWeights(l2=1.0, perceptual=0.3, latent_dist=0.01))
    if task == "scribble":
        # Sparse strokes under-determine the image: stay near the average so the result stays a cat/face.
        # Latent distance 0.05 (was 0.002): the grumpycat64 fine-tuned from the 471,808-image cat64 split the
        # grumpy scribble's face down the middle at 0.002 (seed 0); 0.05 drew a whole Grumpy Cat, and the four
        # other bundled scribbles (seeds 0 and 1) looked the same or better, at stroke PSNR within 0.6 dB.
        # w+ with its rows held together (layer spread 10; was W): on the gallery's scribbles (seeds 0-2) W drew
        # soft cats with colour blots in the blank canvas (a magenta one on the grey cat, a cyan one beside the
        # blond child) and a whole Grumpy Cat at seed 0 only; w+ with the spread draws sharp, photographic cats,
        # a Grumpy Cat at every seed and no blots, at stroke PSNR 0.1-0.4 dB lower (cat64 17.34 -> 17.13, face64
        # 19.08 -> 18.95, grumpycat64 16.43 -> 16.05 dB), same cost per step.
        # Start at the best of 16 of the seed's samples, truncated half-way to the average (was the average):
        # starting from the average, every seed drew the same cat, so the Seed setting did nothing. On the
        # gallery's scribbles (seeds 0-3) each seed now draws its own cat at stroke PSNR within 0.5 dB; at psi 0.7
        # grumpycat64 drew Russian Blues (its data's other breed) at 2 of 4 seeds and cat64 a cream kitten on the
        # grey scribble, at 0.5 neither; plain samples (psi 1) drew rougher cats.
        return InversionConfig(latent_space="w+", steps=150, lr=0.1, init="best-of-k", num_starts=16,
                               start_psi=0.5,
                               weights=LossWeights(l2=1.0, perceptual=0.0, latent_dist=0.05, layer_spread=10.0,
                                                   realism=0.05))
    if task == "inpaint":
        # W held close to the average (not w+): w+ matches the known pixels better but leaves mush in the hole.
        # The latent-distance weight was chosen by looking at the gallery's eye-band holes (face64 at 224,768
        # images, 4 photos): 0.01 / 0.1 / 0.3 fill them with blurred or half-formed eyes, 1.0 puts eyes in all four
        # faces (and in 3 of 4 cats on cat64), at hole SSIM 0.524 / 0.581 / 0.567 / 0.584 and hole PSNR
        # 19.0 / 19.6 / 19.1 / 19.3 dB; the known pixels fit worse (23.7 -> 21.8 dB), but the composite keeps the
        # photo's own pixels there.
        return InversionConfig(latent_space="w", steps=200, lr=0.1,
                               weights=LossWeights(l2=1.0, perceptual=0.3, latent_dist=1.0))
    if task == "colorize":
        # w+ with its rows held together (layer spread 10): a grey target leaves colour free, and free fine-layer
        # rows painted blue/pink blotches on cats and an orange face. Gallery chroma RMS (Cb/Cr vs the true
        # colours, 4 photos): face64 14.99 -> 10.61, cat64 18.34 -> 15.98 (at 198,656 images); W 16.08,
        # latent distance 0.1 alone 16.91 (cat64). Latent distance 0.1 on top of the spread (was 0.001): the
        # 1.76M face64 painted a lime block into one photo's background at 0.001 and 0.01, none at 0.1 (chroma
        # 11.69 -> 11.04); cat64 (374,176) 15.97 -> 15.87, the same to the eye.
        # lr 0.03 (was 0.1): cat64 at 595,328 images turned the gallery's chelsea crop into an orange block with
        # green patches at lr 0.1 (chroma RMS 20.8); at 0.03 a plausible ginger-grey cat (13.0), cat64 mean chroma
        # 14.11 -> 11.34, face64 11.04 -> 10.44 and no lime block (lr 0.05: face 11.57; latent distance 1.0 fixed
        # the cat but brought the lime block back on a face).
        return InversionConfig(latent_space="w+", steps=200, lr=0.03,
                               weights=LossWeights(l2=1.0, perceptual=0.3, latent_dist=0.1, layer_spread=10.0))
    if task in ("deblur", "superres"):
        # Deblur: ImageNet MobileNetV2 features beat the model's D on held-out cat64 and face64 (PSNR and SSIM,
        # README "Perceptual networks"); on the other tasks D measured as well or better.
        return InversionConfig(latent_space="w+", steps=200, lr=0.1,
                               perceptual="mobilenet" if task == "deblur" else "discriminator",
                               weights=LossWeights(l2=1.0, perceptual=0.3, latent_dist=0.001))
    return InversionConfig(latent_space="w+", steps=200, lr=0.1, weights=LossWeights(l2=1.0, perceptual=0.3))


def strokes_from_image(strokes_rgb: np.ndarray, *, white_threshold: int = 245) -> np.ndarray:
    """Stroke mask from a scribble image with no mask: every non-white pixel is a stroke."""
    return (strokes_rgb < white_threshold).any(axis=-1)


def request_for_task(task: str, target: np.ndarray, *, painted: np.ndarray | None = None,
                     config: InversionConfig | None = None, kernel_size: int = 9, sigma: float = 2.0,
                     factor: int = 4, degrade_input: bool = False, **extra) -> InversionRequest:
    """Build the request; `degrade_input=True` first applies a blur to a sharp input (demo of deblur)."""
    ops = operators_for(task, kernel_size=kernel_size, sigma=sigma, factor=factor)
    known = None
    if task == "inpaint":
        if painted is None:
            raise EngineError("inpaint needs a mask: paint the region to fill")
        known = known_from_fill_mask(painted)
    elif task == "scribble":
        strokes = painted if painted is not None else strokes_from_image(target)
        known = known_from_strokes(strokes)
    if known is not None:
        if not known.any():
            raise EngineError("the mask covers the whole image: leave some pixels to match"
                              if task == "inpaint" else "no strokes found: draw something first")
        if task == "inpaint" and known.all():
            raise EngineError("the mask is empty: paint the region to fill")
    if degrade_input and task == "deblur":
        from .inversion import to_tensor, to_uint8
        from .operators import build_chain
        target = to_uint8(build_chain(ops)(to_tensor(target, "cpu")))
    return InversionRequest(target=target, operators=ops, known=known, config=config or default_config(task),
                            **extra)


def project_target(request: InversionRequest) -> np.ndarray:
    """The target as the loss sees it (after grayscale/downsample projections), uint8 RGB `[R, R, 3]`."""
    from .operators import build_chain
    from .runstate import to_tensor, to_uint8
    return to_uint8(build_chain(request.operators).project_target(to_tensor(request.target, "cpu")))
