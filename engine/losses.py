"""Loss terms of the inversion, each returning a per-run tensor `[N]` (no host sync).

Images are float `[N, 3, R, R]` in [-1, 1]; `weight` is `[N, 1, R, R]` with 1 = known pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_l1(x: torch.Tensor, t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean |x - t| over known pixels (all channels)."""
    return ((x - t).abs() * weight).sum(dim=[1, 2, 3]) / (3 * weight.sum(dim=[1, 2, 3])).clamp_min(1e-8)


def masked_l2(x: torch.Tensor, t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean (x - t)^2 over known pixels (all channels)."""
    return ((x - t).square() * weight).sum(dim=[1, 2, 3]) / (3 * weight.sum(dim=[1, 2, 3])).clamp_min(1e-8)


def latent_distance(latent: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of each run's latent rows from `center` (w_avg, or 0 for z)."""
    d = (latent - center).square()
    return d.reshape(d.shape[0], -1).mean(dim=1)


def layer_spread(latent: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of each w+ row from the mean of the run's rows, `[N, L, D]` -> `[N]` (e4e's delta
    regulariser in spirit): w+ may still differ per layer, but rows that wander apart from each other leave the
    mapping network's range and the synthesis answers with a checkerboard."""
    d = (latent - latent.mean(dim=1, keepdim=True)).square()
    return d.reshape(d.shape[0], -1).mean(dim=1)


def realism(logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating 'looks real to D' term: softplus(-D(x)) per run."""
    return F.softplus(-logits.float()).reshape(logits.shape[0], -1).mean(dim=1)


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """Official projector's multi-scale autocorrelation penalty on noise maps `[N, 1, r, r]` -> `[N]`."""
    total = None
    for n in noises:
        while True:
            term = ((n * torch.roll(n, shifts=1, dims=3)).mean(dim=[1, 2, 3]) ** 2
                    + (n * torch.roll(n, shifts=1, dims=2)).mean(dim=[1, 2, 3]) ** 2)
            total = term if total is None else total + term
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    if total is None:
        return torch.zeros([1])
    return total


def normalize_noises_(noises: list[torch.Tensor]) -> None:
    """Re-normalise each noise map to zero mean, unit variance (in place, per run)."""
    with torch.no_grad():
        for n in noises:
            n -= n.mean(dim=[1, 2, 3], keepdim=True)
            n *= n.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
