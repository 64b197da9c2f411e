"""Vanilla DCGAN (Radford et al. 2015) generator and discriminator at 64x64, z-space only.

The generator exposes the same contract as StyleGAN2 (`mapping`, `synthesis`, `num_ws == 1`) with an
identity mapping, so the engine can treat both alike: ws `[N, 1, z_dim]` is simply z.
Images are NCHW float RGB in [-1, 1] (tanh output).
"""
from __future__ import annotations

import torch
from torch import nn

from .stylegan2 import NOISE_MODES


class DCGANMapping(nn.Module):
    """Identity 'mapping': z `[N, z_dim]` -> `[N, 1, z_dim]`; `w_avg` is the prior mean (zeros)."""

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = self.w_dim = z_dim
        self.num_ws = 1
        self.register_buffer("w_avg", torch.zeros([z_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = False) -> torch.Tensor:
        return (z.float() * truncation_psi).unsqueeze(1)


class DCGANSynthesis(nn.Module):
    """Transposed-conv stack z -> 4 -> 8 -> 16 -> 32 -> 64 px, BatchNorm + ReLU, tanh out."""

    def __init__(self, z_dim: int, img_resolution: int = 64, ngf: int = 64, img_channels: int = 3):
        super().__init__()
        if img_resolution != 64:
            raise ValueError("the DCGAN generator is 64x64 only")
        self.img_resolution, self.w_dim, self.num_ws = img_resolution, z_dim, 1
        chans = [ngf * 8, ngf * 4, ngf * 2, ngf]
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, chans[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(chans[0]), nn.ReLU(True)]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], img_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def noise_layers(self) -> list:
        return []

    def noise_buffers(self) -> list[torch.Tensor]:
        return []

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", *, noises=None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:  # no noise inputs, but the same contract as StyleGAN2
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != 1 or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, 1, {self.w_dim}], got {list(ws.shape)}")
        return self.net(ws[:, 0, :, None, None]).float()


class DCGANGenerator(nn.Module):
    """DCGAN generator with the StyleGAN-style contract (z_dim, w_dim, num_ws=1, img_resolution)."""

    arch = "dcgan"

    def __init__(self, z_dim: int = 100, img_resolution: int = 64, ngf: int = 64, img_channels: int = 3):
        super().__init__()
        self.z_dim = self.w_dim = z_dim
        self.c_dim, self.num_ws = 0, 1
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = DCGANMapping(z_dim)
        self.synthesis = DCGANSynthesis(z_dim, img_resolution, ngf, img_channels)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi=truncation_psi), noise_mode=noise_mode)


class DCGANDiscriminator(nn.Module):
    """Strided-conv discriminator 64 -> 4 px, LeakyReLU, BatchNorm -> logits `[N, 1]`; exposes features."""

    def __init__(self, img_resolution: int = 64, ndf: int = 64, img_channels: int = 3):
        super().__init__()
        if img_resolution != 64:
            raise ValueError("the DCGAN discriminator is 64x64 only")
        self.img_resolution = img_resolution
        chans = [ndf, ndf * 2, ndf * 4, ndf * 8]
        blocks = [nn.Sequential(nn.Conv2d(img_channels, chans[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True))]
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                                        nn.LeakyReLU(0.2, True)))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False)

    def features(self, img: torch.Tensor, *, max_blocks: int | None = None) -> list[torch.Tensor]:
        feats = []
        x = img
        for block in list(self.blocks)[:max_blocks]:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.features(img)[-1]).flatten(1)
