"""Step schedules of the official StyleGAN2-ADA projector (pure functions of the progress t in [0, 1])."""
from __future__ import annotations

import math


def learning_rate(t: float, *, base_lr: float, rampup: float, rampdown: float) -> float:
    """Linear warm-up over `rampup`, cosine ramp-down over the last `rampdown` of the run."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return base_lr * ramp


def latent_noise_scale(t: float, *, w_std: float, initial_factor: float, ramp_length: float) -> float:
    """Std of the noise added to the latent: fades out quadratically over `ramp_length`."""
    if ramp_length <= 0:
        return 0.0
    return w_std * initial_factor * max(0.0, 1.0 - t / ramp_length) ** 2
