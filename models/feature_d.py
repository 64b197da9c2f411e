"""Projected feature discriminator: small trainable heads on a frozen ImageNet MobileNetV2 (Sauer et al. 2021).

`FeatureDiscriminator(backbone, meta)(x)`: images `[N, 3, R, R]`, RGB in [-1, 1] (any R; resized to 128 px)
-> logits `[N, 3]`, one per feature scale (MobileNetV2 block outputs at strides 4, 8 and 16), higher = more real.
Images are resized to `size` px first (default 128: an ImageNet network at 64 px sees a face the size of a
thumbnail; 128 costs about 3.5x the time of 64, one thread).
The backbone is frozen and kept out of `parameters()` / `state_dict()` (it is the shipped perceptual network, not
part of a training run's state); the fixed random 1x1 "cross-channel mixing" projections are buffers, so a resumed
run sees the same ones. Used by `models.train` next to the pixel discriminator, never by the engine.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .mobilenet import FEATURE_BLOCKS, MobileNetV2, input_affine, load_mobilenet

SIZE = 128  # a power of two, at least 64, so that each head halves its map down to exactly 4x4
# Which of FEATURE_BLOCKS feed a head (strides 4, 8, 16: 32, 16 and 8 px maps at 128 px), and the width each
# is projected to. Stride 2 is mostly edges; stride 32 is 4x4 at this size, too coarse for a head of its own.
SCALES = ((1, 64), (2, 128), (3, 256))
HEAD_MAX = 256


def _head(channels: int, size: int) -> nn.Sequential:
    """Spectral-normalised stride-2 convs with batch norm down to 4x4, then a 4x4 conv to one logit.

    Batch norm is Projected GAN's too, and needed: without it each spectral-normalised layer shrinks its input, and
    on face64 (from 2.11M images) the heads' logits stayed within +-0.6 of each other for real and fake, their
    loss at chance (1.3-1.4 against 2 ln 2) for 15k images."""
    layers: list[nn.Module] = []
    c = channels
    while size > 4:
        c_out = min(c * 2, HEAD_MAX)
        layers += [spectral_norm(nn.Conv2d(c, c_out, 4, stride=2, padding=1, bias=False)), nn.BatchNorm2d(c_out),
                   nn.LeakyReLU(0.2)]
        c, size = c_out, size // 2
    layers.append(spectral_norm(nn.Conv2d(c, 1, 4)))
    return nn.Sequential(*layers)


class FeatureDiscriminator(nn.Module):
    """Frozen MobileNetV2 features -> fixed random 1x1 projections -> one trainable head per scale."""

    def __init__(self, backbone: MobileNetV2, meta: dict, *, seed: int = 0, size: int = SIZE) -> None:
        super().__init__()
        if size < 64 or size & (size - 1):
            raise ValueError(f"feature discriminator input size must be a power of two >= 64, got {size}")
        self.size = size
        # A list hides the backbone from parameters(), state_dict() and the optimiser.
        self._backbone = [backbone.eval().requires_grad_(False)]
        self.gain, self.offset = input_affine(meta)
        gen = torch.Generator().manual_seed(seed)
        channels = _feature_channels(backbone)
        self.heads = nn.ModuleList()
        for i, (block, width) in enumerate(SCALES):
            cin = channels[block]
            bound = 1.0 / math.sqrt(cin)  # Kaiming-uniform for a 1x1 conv, as Projected GAN's mixing layers
            self.register_buffer(f"mix{i}", (torch.rand(width, cin, 1, 1, generator=gen) * 2 - 1) * bound)
            stride = 2 ** (block + 1)
            self.heads.append(_head(width, size // stride))

    def backbone(self) -> MobileNetV2:
        return self._backbone[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        net = self.backbone()
        if next(net.parameters()).device != x.device:
            net.to(x.device)
        feats = net.features(x * self.gain + self.offset)
        logits = [head(F.conv2d(feats[block], getattr(self, f"mix{i}")))
                  for i, ((block, _), head) in enumerate(zip(SCALES, self.heads))]
        return torch.cat([lg.flatten(1) for lg in logits], dim=1)


def _feature_channels(net: MobileNetV2) -> list[int]:
    """Channels of `net.features()`'s outputs (the project convs of FEATURE_BLOCKS)."""
    return [net.blocks[i].project.out_channels for i in FEATURE_BLOCKS]


def build_feature_discriminator(*, device: torch.device, seed: int = 0, size: int = SIZE,
                                path: str | None = None) -> FeatureDiscriminator:
    """Heads (fresh, from `seed`) on the shipped MobileNetV2 (`path`: another converted copy), all on `device`."""
    net, meta = load_mobilenet(path, device=device)
    return FeatureDiscriminator(net, meta, seed=seed, size=size).to(device).train()
