"""Differentiable degradation operators applied to G(w) (and, for projections, to the target).

Input/output: float `[N, 3, R, R]` in [-1, 1], same shape out. An operator chain also yields the loss
weight map `[N, 1, R, R]` (1 = known pixel) built from the request's known mask (see engine/types.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .types import EngineError, OperatorSpec

OPERATOR_KINDS = ("identity", "mask", "blur", "grayscale", "downsample", "scribble")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class Identity(nn.Module):
    """x -> x (plain reconstruction)."""

    idempotent = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Grayscale(nn.Module):
    """Luma 0.299 R + 0.587 G + 0.114 B, repeated to 3 channels (colourisation)."""

    idempotent = True

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(GRAY_WEIGHTS).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weights.to(x.dtype)).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian `[k, k]` (sums to 1)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise EngineError(f"blur kernel size must be a positive odd integer, got {kernel_size}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise EngineError(f"blur sigma must be a finite number > 0, got {sigma}")
    r = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


class Blur(nn.Module):
    """Gaussian blur with reflect padding (deblurring: the target is the blurred photo)."""

    idempotent = False

    def __init__(self, kernel_size: int, sigma: float) -> None:
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel(kernel_size, sigma)[None, None].repeat(3, 1, 1, 1))
        self.pad = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad >= x.shape[-1]:
            raise EngineError(f"blur kernel is larger than the {x.shape[-1]} px image")
        x = F.pad(x, [self.pad] * 4, mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), groups=3)


class Downsample(nn.Module):
    """Box-average by `factor`, then nearest-upsample back, so shapes stay `[N,3,R,R]` (super-resolution)."""

    idempotent = True

    def __init__(self, factor: int) -> None:
        super().__init__()
        if not isinstance(factor, int) or factor < 1:
            raise EngineError(f"downsample factor must be a positive integer, got {factor!r}")
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        if x.shape[-1] % self.factor:
            raise EngineError(f"downsample factor {self.factor} does not divide the {x.shape[-1]} px resolution")
        return F.interpolate(F.avg_pool2d(x, self.factor), scale_factor=self.factor, mode="nearest")


class OperatorChain(nn.Module):
    """Operators applied in order; `uses_mask` says whether the known mask restricts the loss."""

    def __init__(self, ops: list[nn.Module], uses_mask: bool) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.uses_mask = uses_mask
        self.idempotent = all(getattr(op, "idempotent", False) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def project_target(self, target: torch.Tensor) -> torch.Tensor:
        """Apply the idempotent projections (grayscale, downsample) to the target; leave blur alone."""
        for op in self.ops:
            if getattr(op, "idempotent", False):
                target = op(target)
        return target


def build_chain(specs: tuple[OperatorSpec, ...]) -> OperatorChain:
    """Operator modules for a request's specs ('mask'/'scribble' only switch on the known-pixel weighting)."""
    if not specs:
        specs = (OperatorSpec("identity"),)
    ops: list[nn.Module] = []
    uses_mask = False
    for s in specs:
        if s.kind not in OPERATOR_KINDS:
            raise EngineError(f"unknown operator {s.kind!r}; expected one of {OPERATOR_KINDS}")
        if s.kind in ("mask", "scribble"):
            uses_mask = True
        elif s.kind == "blur":
            ops.append(Blur(s.kernel_size, s.sigma))
        elif s.kind == "grayscale":
            ops.append(Grayscale())
        elif s.kind == "downsample":
            ops.append(Downsample(s.factor))
        else:
            ops.append(Identity())
    return OperatorChain(ops, uses_mask)
