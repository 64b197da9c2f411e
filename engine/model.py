"""A loaded model prepared for inversion: generator, discriminator, latent statistics, device.

`prepare(loaded, device=...)` moves the networks to `device` and estimates `w_avg`/`w_std` from 10,000
mapped samples when the checkpoint does not carry `w_avg` (results are cached on the EngineModel).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from models import LoadedModel, ModelConfig

log = logging.getLogger(__name__)
W_SAMPLES = 10_000


@dataclass(frozen=True)
class EngineModel:
    """Frozen bundle the engine runs on; `w_avg` `[w_dim]`, `w_std` scalar (RMS distance to w_avg)."""

    config: ModelConfig
    G: nn.Module
    D: nn.Module | None
    w_avg: torch.Tensor
    w_std: float
    device: torch.device

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)


@torch.no_grad()
def latent_stats(G: nn.Module, *, device: torch.device, samples: int = W_SAMPLES,
                 seed: int = 123) -> tuple[torch.Tensor, float]:
    """Mean of mapped w and RMS distance to it, from `samples` random z (official projector's recipe)."""
    gen = torch.Generator().manual_seed(seed)
    ws = []
    for start in range(0, samples, 1000):
        z = torch.randn(min(1000, samples - start), G.z_dim, generator=gen).to(device)
        ws.append(G.mapping(z)[:, 0, :].float())
    w = torch.cat(ws)
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / w.shape[0]).sqrt())
    return w_avg, w_std


def prepare(loaded: LoadedModel, *, device: str | torch.device = "cpu", channels_last: bool = True) -> EngineModel:
    """EngineModel on `device`; uses the checkpoint's w_avg when known, else the 10k-sample estimate.

    `channels_last` stores the convolution weights NHWC, which the CPU (oneDNN) and GPU (cuDNN) kernels run
    faster (measured with `python -m engine.bench --layout`); the loaded model's own modules are converted."""
    device = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G = loaded.G.to(device, memory_format=fmt).eval().requires_grad_(False)
    D = (loaded.D.to(device, memory_format=fmt).eval().requires_grad_(False) if loaded.D is not None
         else None)
    est_avg, w_std = latent_stats(G, device=device)
    if loaded.config.w_avg_known and getattr(G, "arch", "") != "dcgan":
        w_avg = G.mapping.w_avg.detach().float().clone()
    else:
        log.info("%s: w_avg not in the checkpoint, estimated from %d samples", loaded.config.name, W_SAMPLES)
        w_avg = est_avg
    return EngineModel(config=loaded.config, G=G, D=D, w_avg=w_avg.to(device), w_std=w_std, device=device)
