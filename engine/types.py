"""The engine's data contract, stated once for every layer (CLI, app, tests).

Conventions (never flipped between layers):
- Images crossing the engine boundary are numpy `uint8` arrays `[H, W, 3]`, RGB order, 0..255.
- Inside the engine images are torch float `[N, 3, R, R]` in [-1, 1] (the generator's range).
- Masks are numpy `bool` arrays `[H, W]` with **True = known pixel** (the pixel constrains the result).
  Users paint the region to *fill* (inpaint) or the *strokes* (scribble); `known_from_fill_mask` and
  `known_from_strokes` convert those to this polarity at the edge.
- Latents: z `[z_dim]`, w `[1, w_dim]`, w+ `[num_ws, w_dim]` per run (a batch dimension in front inside).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

LATENT_SPACES = ("z", "w", "w+")
OPTIMIZERS = ("adam", "lbfgs")
# Perceptual feature networks (engine/perceptual.py). 'mobilenet' taps the shipped ImageNet MobileNetV2's
# inverted-residual block outputs 0, 2, 5, 12, 16 (strides 2, 4, 8, 16, 32; 16, 24, 32, 96, 320 channels), on the
# image resized into 64..256 px; 'discriminator' the model's D blocks; 'vgg16' relu1_2..relu5_3.
PERCEPTUALS = ("discriminator", "mobilenet", "vgg16", "vgg16-random", "none")
INITS = ("mean", "best-of-k", "given")
TASKS = ("reconstruct", "inpaint", "colorize", "deblur", "superres", "scribble")


class EngineError(ValueError):
    """A request the engine cannot run; the message is meant for the user."""


@dataclass(frozen=True)
class OperatorSpec:
    """One degradation applied to G(w) *and* compared against the target.

    kind: 'identity' | 'mask' | 'blur' (kernel_size, sigma) | 'grayscale' | 'downsample' (factor) |
    'scribble'. 'mask' and 'scribble' restrict the loss to the request's `known` pixels.
    """

    kind: str
    kernel_size: int = 9
    sigma: float = 2.0
    factor: int = 4


def _is_finite_number(v: object) -> bool:
    """A real int or float that is not NaN or infinite; bools are refused though Python counts them as ints."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class LossWeights:
    """Weights of each loss term; any can be 0."""

    l1: float = 0.0
    l2: float = 1.0
    perceptual: float = 0.5
    latent_dist: float = 0.0
    layer_spread: float = 0.0  # w+ only: keeps the per-layer rows near their own mean (see losses.layer_spread)
    realism: float = 0.0
    noise_reg: float = 1e5

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not _is_finite_number(v) or v < 0:
                raise EngineError(f"loss weight {f.name} must be a finite number >= 0, got {v!r}")
        if self.l1 == 0 and self.l2 == 0 and self.perceptual == 0:
            raise EngineError("all image losses (L1, L2, perceptual) are 0: nothing ties the result to the picture")


@dataclass(frozen=True)
class TuningConfig:
    """Pivotal tuning (PTI, Roich et al.), the optional second stage after the latent search.

    steps: tuning steps on a per-run copy of the synthesis weights (0 = off). lr: Adam learning rate of those
    weights (PTI uses 3e-4; our 64 px models gain more at 1e-3: held-out, 12 images, 300 + 300 steps, cat64 +2.5 dB at
    3e-4 (4 images) vs +3.15 dB at 1e-3, face64 +4.76 dB at 1e-3). locality: weight of PTI's locality regulariser (drift of the tuned generator's output
    from the frozen one, L2 + perceptual, at random w's moved `alpha` towards the pivot); alpha is a distance in
    W in units of the model's `w_std`; locality_samples: random w's per step. hole: weight of an L2 term that
    keeps the unknown pixels of a masked task (the inpainting hole) at the frozen generator's G(pivot), so the
    fill stays the generator's invention and is not pulled towards the photo around it.
    """

    steps: int = 0
    lr: float = 1e-3
    locality: float = 0.1
    alpha: float = 0.5
    locality_samples: int = 1
    hole: float = 1.0

    def validate(self, max_steps: int) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 0 <= self.steps <= max_steps:
            raise EngineError(f"tuning steps must be an integer in 0..{max_steps}, got {self.steps!r}")
        for name in ("lr", "locality", "alpha", "hole"):
            v = getattr(self, name)
            if not _is_finite_number(v) or v < 0:
                raise EngineError(f"tuning {name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise EngineError(f"tuning learning rate must be > 0, got {self.lr!r}")
        if not isinstance(self.locality_samples, int) or not 1 <= self.locality_samples <= 16:
            raise EngineError(f"tuning locality_samples must be an integer in 1..16, got {self.locality_samples!r}")


@dataclass(frozen=True)
class InversionConfig:
    """How to search: latent space, optimiser, schedule, losses, initialisation, precision."""

    latent_space: str = "w+"
    steps: int = 200
    lr: float = 0.1
    optimizer: str = "adam"
    weights: LossWeights = field(default_factory=LossWeights)
    perceptual: str = "discriminator"
    optimize_noise: bool = False
    init: str = "mean"
    num_starts: int = 8
    # best-of-k's random starts are pulled towards the average by this (1: plain samples, 0: the average), as a
    # truncated sample is: the scribble default (0.5) starts from cleaner cats than plain samples give.
    start_psi: float = 1.0
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    preview_every: int = 10
    seed: int = 0
    bf16: bool = False
    max_steps: int = 5000
    tuning: TuningConfig = field(default_factory=TuningConfig)

    def validate(self) -> None:
        if self.latent_space not in LATENT_SPACES:
            raise EngineError(f"latent space must be one of {LATENT_SPACES}, got {self.latent_space!r}")
        if self.optimizer not in OPTIMIZERS:
            raise EngineError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.perceptual not in PERCEPTUALS:
            raise EngineError(f"perceptual backbone must be one of {PERCEPTUALS}, got {self.perceptual!r}")
        if self.init not in INITS:
            raise EngineError(f"init must be one of {INITS}, got {self.init!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps <= 0:
            raise EngineError(f"steps must be a positive integer, got {self.steps!r}")
        if self.steps > self.max_steps:
            raise EngineError(f"steps must be at most {self.max_steps}, got {self.steps}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise EngineError(f"learning rate must be a finite number > 0, got {self.lr!r}")
        if not isinstance(self.preview_every, int) or self.preview_every <= 0:
            raise EngineError(f"preview_every must be a positive integer, got {self.preview_every!r}")
        if not isinstance(self.num_starts, int) or not 1 <= self.num_starts <= 256:
            raise EngineError(f"num_starts must be an integer in 1..256, got {self.num_starts!r}")
        if not _is_finite_number(self.start_psi) or not 0 <= self.start_psi <= 1:
            raise EngineError(f"start_psi must be a number in 0..1, got {self.start_psi!r}")
        self.weights.validate()
        self.tuning.validate(self.max_steps)

    @property
    def total_steps(self) -> int:
        """Latent steps plus tuning steps (the step counter of frames runs through both stages)."""
        return self.steps + self.tuning.steps

    def replace(self, **changes: Any) -> "InversionConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class InversionRequest:
    """What to match: target `[R, R, 3]` uint8 RGB at the model's resolution, operators, known mask."""

    target: np.ndarray
    operators: tuple[OperatorSpec, ...] = (OperatorSpec("identity"),)
    known: np.ndarray | None = None
    config: InversionConfig = field(default_factory=InversionConfig)
    init_latent: torch.Tensor | None = None
    init_noises: tuple[torch.Tensor, ...] | None = None


@dataclass(frozen=True)
class Frame:
    """One streamed snapshot of a run (every `preview_every` steps, plus the final one).

    `stage` is 'latent' (the latent search, steps 1..config.steps) or 'tuning' (pivotal tuning, steps
    config.steps+1..config.total_steps; `latent` is then the fixed pivot and `image` the tuned generator's
    output). The final frame of a tuned run carries `weight_deltas`: fp16 CPU (tuned - original) synthesis
    weights by parameter name, so a result can be saved and restored (engine/state.py)."""

    step: int
    total: int
    image: np.ndarray          # [R, R, 3] uint8 RGB: G(latent)
    degraded: np.ndarray       # [R, R, 3] uint8 RGB: operator(G(latent)), what the loss compares
    losses: dict[str, float]   # each loss term (unweighted) plus 'total' (weighted sum)
    elapsed: float             # seconds since the run started
    latent: torch.Tensor       # CPU float32: z [z_dim], w [1, w_dim] or w+ [num_ws, w_dim]
    latent_space: str
    noises: tuple[torch.Tensor, ...] | None = None  # CPU noise maps when noise is optimised
    messages: tuple[str, ...] = ()                  # notices (e.g. perceptual fallback)
    done: bool = False
    psnr: float = float("nan")  # dB, `degraded` vs the (projected) target over the known pixels: what the loss sees
    ssim: float = float("nan")  # SSIM of the same pair (windows centred on known pixels)
    stage: str = "latent"
    weight_deltas: dict[str, torch.Tensor] | None = None

    @property
    def steps_per_s(self) -> float:
        return self.step / self.elapsed if self.elapsed > 0 else 0.0


def known_from_fill_mask(fill: np.ndarray) -> np.ndarray:
    """User's inpaint mask (True/nonzero = region to fill) -> known mask (True = keep)."""
    return ~np.asarray(fill, dtype=bool)


def known_from_strokes(strokes: np.ndarray) -> np.ndarray:
    """User's scribble stroke mask (True/nonzero = stroked) -> known mask (True = constrained)."""
    return np.asarray(strokes, dtype=bool)
