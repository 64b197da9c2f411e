"""Interpolation between two latents: linear in w / w+, spherical (slerp) in z.

Latents follow engine/types.py shapes; frames come out as uint8 RGB `[R, R, 3]`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .inversion import to_uint8
from .model import EngineModel
from .runstate import latent_to_ws
from .types import EngineError


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two vectors (falls back to lerp when nearly parallel)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1, 1))
    if float(omega) < 1e-6:
        return torch.lerp(a, b, t)
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def interpolate_latents(a: torch.Tensor, b: torch.Tensor, *, space: str, num_frames: int) -> list[torch.Tensor]:
    """`num_frames` latents from a to b inclusive."""
    if a.shape != b.shape:
        raise EngineError(f"latents differ in shape: {list(a.shape)} vs {list(b.shape)}")
    if not isinstance(num_frames, int) or not 2 <= num_frames <= 240:
        raise EngineError(f"number of frames must be an integer in 2..240, got {num_frames!r}")
    ts = np.linspace(0.0, 1.0, num_frames)
    if space == "z":
        return [slerp(a, b, float(t)) for t in ts]
    return [torch.lerp(a, b, float(t)) for t in ts]


def to_ws(model: EngineModel, latent: torch.Tensor, space: str) -> torch.Tensor:
    """One run's latent -> ws `[1, num_ws, w_dim]`."""
    G = model.G
    shape = {"z": (1, G.z_dim), "w": (1, 1, G.w_dim), "w+": (1, G.num_ws, G.w_dim)}[space]
    return latent_to_ws(G, latent.to(model.device).reshape(shape), space)


@torch.inference_mode()
def render(model: EngineModel, latent: torch.Tensor, space: str) -> np.ndarray:
    """G(latent) as uint8 RGB."""
    return to_uint8(model.G.synthesis(to_ws(model, latent, space), noise_mode="const"))


def interpolation_frames(model: EngineModel, a: torch.Tensor, b: torch.Tensor, *, space: str,
                         num_frames: int) -> Iterator[np.ndarray]:
    """Yield rendered frames along the path from a to b."""
    for lat in interpolate_latents(a, b, space=space, num_frames=num_frames):
        yield render(model, lat, space)


def common_space(space_a: str, space_b: str) -> str:
    """Latents from different spaces meet in the more general one (z < w < w+)."""
    order = ["z", "w", "w+"]
    return order[max(order.index(space_a), order.index(space_b))]


def lift(model: EngineModel, latent: torch.Tensor, space: str, to: str) -> torch.Tensor:
    """Express a latent of `space` in the more general space `to` (z -> w -> w+)."""
    if space == to:
        return latent
    with torch.inference_mode():
        ws = to_ws(model, latent, space)[0].float().cpu()
    return ws[:1] if to == "w" else ws
