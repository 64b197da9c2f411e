"""Facial-component discriminators: small StyleGAN2-style critics on the eye band and the mouth of aligned faces.

`ComponentDiscriminator(resolution)(x)`: images `[N, 3, R, R]`, RGB in [-1, 1], framed as face64's training
crops (UTKFace aligned & cropped) -> logits `[N, len(COMPONENTS)]`, higher = more real. Each head sees only its
own fixed box of the image (the faces are aligned, so the boxes need no landmarks); pixels outside every box do
not reach a logit. GFPGAN's design (Wang et al. 2021: left eye, right eye and mouth critics beside the global one)
at this scale: the whole-image D ranks face64's broken psi-1 samples about as real as whole ones, and a critic
that only ever sees eyes (or a mouth) has no other evidence to spend its capacity on. Used by `models.train`
next to the pixel discriminator, never by the engine.
"""
from __future__ import annotations

import torch
from torch import nn

from .stylegan2 import Conv2dLayer, DiscriminatorBlock, FullyConnectedLayer, MinibatchStdLayer

# (name, (x0, y0, x1, y1)) as fractions of the frame. From the mean dlib 68-point landmarks of 400 training crops
# (assets/face_template.json, at 64 px): eyes x 14-49 px, y 17-21 (s.d. about 1 px); brows y 10-14; mouth x 20-43,
# y 42-51 (s.d. 1.2-1.6). Each box keeps a margin of several standard deviations and the translation DiffAugment
# applies (1/8 of the frame), and is a multiple of 4 px at 64 px so that two halvings stay whole.
COMPONENTS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("eyes", (8 / 64, 8 / 64, 56 / 64, 32 / 64)),     # 48 x 24 px at 64: both eyes and brows, so pairs are judged
    ("mouth", (16 / 64, 36 / 64, 48 / 64, 56 / 64)),  # 32 x 20 px at 64
)
CHANNELS = (64, 128)


def component_boxes(resolution: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """COMPONENTS in pixels of a `resolution`-px frame (each side a multiple of 4)."""
    boxes = []
    for name, (x0, y0, x1, y1) in COMPONENTS:
        px = tuple(round(f * resolution) for f in (x0, y0, x1, y1))
        if (px[2] - px[0]) % 4 or (px[3] - px[1]) % 4 or px[2] <= px[0] or px[3] <= px[1]:
            raise ValueError(f"the {name} box is {px} at {resolution} px: sides must be positive multiples of 4")
        boxes.append((name, px))
    return boxes


class _Head(nn.Module):
    """One component: two residual downsampling blocks, minibatch-stddev, conv, fc -> one logit."""

    def __init__(self, height: int, width: int, *, channels: tuple[int, int] = CHANNELS) -> None:
        super().__init__()
        c0, c1 = channels
        self.b0 = DiscriminatorBlock(0, c0, c1, height, 3)
        self.b1 = DiscriminatorBlock(c1, c1, c1, height // 2, 3)
        self.mbstd = MinibatchStdLayer(4, 1)
        self.conv = Conv2dLayer(c1 + 1, c1, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(c1 * (height // 4) * (width // 4), c1, activation="lrelu")
        self.out = FullyConnectedLayer(c1, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.b1(self.b0(None, img), None)
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))


class ComponentDiscriminator(nn.Module):
    """One `_Head` per entry of COMPONENTS, each reading its own box of the frame."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.boxes = component_boxes(resolution)
        self.heads = nn.ModuleDict({name: _Head(y1 - y0, x1 - x0) for name, (x0, y0, x1, y1) in self.boxes})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"component discriminator built for {self.resolution} px, got {tuple(x.shape[-2:])}")
        return torch.cat([self.heads[name](x[:, :, y0:y1, x0:x1]) for name, (x0, y0, x1, y1) in self.boxes], dim=1)
