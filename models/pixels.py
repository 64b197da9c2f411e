"""Generator pixel scale, the one place it lives: float in [-1, 1] <-> uint8 0..255, layout (NCHW, CHW ...) unchanged.

`to_uint8(x)` clamps to [-1, 1], maps -1 -> 0 and 1 -> 255 and rounds to nearest; `from_uint8(x)` is its inverse
on the 256 levels (0 -> -1.0, 255 -> 1.0), returned as float32 on the input's device.
"""
from __future__ import annotations

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] (values outside are clamped) -> uint8 0..255, same shape and device; detached."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or any integer/float tensor of levels) 0..255 -> float32 in [-1, 1], same shape and device."""
    return x.float() / 127.5 - 1
