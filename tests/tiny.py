"""Tiny random networks for tests: built in code, seeded, seconds on CPU, no weight files needed.

`make_tiny_model(resolution=32, arch="stylegan2", seed=0)` -> `models.LoadedModel` (eval mode, no grad), the same
shape of object `models.load_model` returns. Other layers' tests (engine, app) import it from here.
`install_tiny_model(tmp_path, monkeypatch)` saves one as `tiny32` where `models.load_model("tiny32")` finds it, for
tests of command-line tools.

Parameters the official initialisation leaves at zero (biases, noise strengths) and `w_avg` are filled with
small random values, so a loader that drops or swaps any of them changes the output and tests can see it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import models
from models import LoadedModel, ModelConfig
from models.train import Trainer, TrainOptions, make_config

STYLEGAN2_RESOLUTIONS = (16, 32, 64, 128, 256)
TINY_CHANNEL_MAX = 16
TINY_Z_DIM = TINY_W_DIM = 32
TINY_DCGAN_Z_DIM = 16


def tiny_config(resolution: int = 32, *, arch: str = "stylegan2", name: str | None = None) -> ModelConfig:
    """Config of a tiny network. StyleGAN2 channels go 4 (at `resolution`), 8, then 16 down to 4x4."""
    if arch == "stylegan2":
        return models.small_stylegan2_config(resolution=resolution, channel_base=4 * resolution,
                                             channel_max=TINY_CHANNEL_MAX, z_dim=TINY_Z_DIM, w_dim=TINY_W_DIM,
                                             mapping_layers=2, name=name or f"tiny{resolution}",
                                             domain="random test network", licence="test-only",
                                             provenance="tests/tiny.py")
    if arch == "dcgan":
        if resolution != 64:
            raise ValueError("DCGAN is 64x64 only")
        return models.dcgan_config(z_dim=TINY_DCGAN_Z_DIM, ngf=8, ndf=8, name=name or "tinydcgan",
                                   domain="random test network", licence="test-only", provenance="tests/tiny.py")
    raise ValueError(f"unknown arch {arch!r}")


def _fill_zero_inits(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("bias", "noise_strength"):
                p.copy_(p + 0.1 * torch.randn(p.shape, generator=gen))
        for name, b in module.named_buffers():
            if name.endswith("w_avg"):
                b.copy_(0.5 * torch.randn(b.shape, generator=gen))


def make_tiny_model(*, resolution: int | None = None, arch: str = "stylegan2", seed: int = 0) -> LoadedModel:
    """A seeded tiny G/D pair (StyleGAN2 at `resolution`, default 32; DCGAN always 64x64) like `load_model` returns."""
    if resolution is None:
        resolution = 64 if arch == "dcgan" else 32
    config = tiny_config(resolution, arch=arch)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        G = models.build_generator(config)
        D = models.build_discriminator(config)
    gen = torch.Generator().manual_seed(seed + 1)
    if arch == "stylegan2":
        _fill_zero_inits(G, gen)
        _fill_zero_inits(D, gen)
    G.eval().requires_grad_(False)
    D.eval().requires_grad_(False)
    return LoadedModel(config=config, G=G, D=D)


def fixed_z(model_or_G, n: int = 2, seed: int = 123) -> torch.Tensor:
    """Deterministic latents `[n, z_dim]` for a LoadedModel or generator."""
    G = getattr(model_or_G, "G", model_or_G)
    return torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))


def install_tiny_model(tmp_path: Path, monkeypatch, *, name: str = "tiny32", resolution: int = 32) -> LoadedModel:
    """Save a tiny model under `tmp_path/models/NAME` and point LATENTBRUSH_MODELS there (undone by monkeypatch)."""
    m = make_tiny_model(resolution=resolution)
    models.save_model(tmp_path / "models" / name, m.config, m.G, m.D)
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(tmp_path / "models"))
    return m


def tiny_trainer(**options) -> Trainer:
    """A `models.train.Trainer` for tiny 64 px StyleGAN2 networks (batch 4, fp32, no path-length term) on 8 random
    uint8 images (the same 8 on every call); `options` override those `TrainOptions`."""
    opts = TrainOptions(**{**dict(batch=4, channel_base=256, channel_max=16, z_dim=16, bf16=False, pl_weight=0.0),
                           **options})
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (8, 3, 64, 64), dtype=np.uint8))
    return Trainer(opts, make_config(opts, data_name="random"), images, torch.device("cpu"))
