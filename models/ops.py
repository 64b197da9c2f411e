"""Pure-PyTorch reference ops of StyleGAN2: FIR resampling, bias+activation, resampled convolution.

All tensors are NCHW float. Filters are 2-D `[fh, fw]`, normalised to sum 1 (see `setup_filter`).
These reproduce the official `upfirdn2d`, `bias_act` and `conv2d_resample` maths without custom kernels.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Outer product of 1-D taps, normalised to sum 1 -> `[k, k]` float32."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), FIR filter, downsample."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # The official op flips the filter (true convolution); our filters are symmetric, but keep it exact.
    k = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])
    k = k[None, None].expand(c, 1, *k.shape)
    x = F.conv2d(x, k, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 2) -> torch.Tensor:
    """2x (or `up`x) FIR upsampling that keeps the image centred, as in the official code."""
    fw = f.shape[-1]
    p = [(fw + up - 1) // 2, (fw - up) // 2]
    return upfirdn2d(x, f, up=up, padding=[p[0], p[1], p[0], p[1]], gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, *, down: int = 2) -> torch.Tensor:
    """FIR-filtered downsampling by `down`, as in the official code."""
    fw = f.shape[-1]
    p = [(fw - down + 1) // 2, (fw - down) // 2]
    return upfirdn2d(x, f, down=down, padding=[p[0], p[1], p[0], p[1]])


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, *, act: str = "linear",
             gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """Add per-channel bias (dim 1), apply 'linear' or 'lrelu', multiply by gain, clamp to [-clamp, clamp]."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA)
        gain = LRELU_GAIN if gain is None else gain
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    gain = 1.0 if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, *,
                    up: int = 1, down: int = 1, padding: int = 0) -> torch.Tensor:
    """2-D convolution (cross-correlation) with optional 2x FIR up- or downsampling (official layout)."""
    kh, kw = w.shape[-2:]
    p0 = p1 = padding
    if up > 1:
        fw = f.shape[-1]
        p0 += (fw + up - 1) // 2
        p1 += (fw - up) // 2
    if down > 1:
        fw = f.shape[-1]
        p0 += (fw - down + 1) // 2
        p1 += (fw - down) // 2
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[p0, p1, p0, p1])
        return F.conv2d(x, w, stride=down)
    if up > 1 and down == 1:
        # Transposed conv does the zero-insertion; the FIR filter then interpolates (official 'up' path).
        p0 -= kw - 1
        p1 -= kw - up
        pt = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=up, padding=pt)
        return upfirdn2d(x, f, padding=[p0 + pt, p1 - pt, p0 + pt, p1 - pt], gain=up * up)
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding)
    raise ValueError("simultaneous up- and downsampling is not supported")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square along `dim` (the mapping network's z normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
