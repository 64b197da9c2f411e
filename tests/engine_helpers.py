"""Helpers for engine tests: a well-conditioned tiny generator and targets made from known latents."""
from __future__ import annotations

import numpy as np
import torch

import models
from engine import prepare
from engine.inversion import to_uint8
from engine.metrics import psnr  # noqa: F401 - re-exported for the engine tests


def recoverable_model(seed: int = 0):
    """32 px StyleGAN2 whose outputs stay inside [-1, 1] like a trained one (toRGB scaled down)."""
    cfg = models.small_stylegan2_config(resolution=32, channel_base=512, channel_max=32, z_dim=32, w_dim=32,
                                        name="recoverable32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = models.build_generator(cfg).eval().requires_grad_(False)
        D = models.build_discriminator(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for block in G.synthesis.blocks():
            block.torgb.weight.mul_(0.15)
    return prepare(models.LoadedModel(cfg, G, D))


def target_from_latent(model, *, seed: int = 1, psi: float = 1.0) -> tuple[np.ndarray, torch.Tensor]:
    """(uint8 RGB image of G(w), that w `[num_ws, w_dim]`)."""
    z = torch.randn(1, model.G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = model.G.mapping(z, truncation_psi=psi)
        img = model.G.synthesis(ws, noise_mode="const")
    assert float(img.abs().max()) < 1.0, "test generator must stay in range"
    return to_uint8(img), ws[0]
