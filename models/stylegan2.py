"""StyleGAN2 generator and discriminator, parameter-for-parameter compatible with the official StyleGAN2-ADA code.

Images are NCHW float RGB in about [-1, 1]; latents: z `[N, z_dim]`, ws `[N, num_ws, w_dim]`.
Parameter and buffer names follow `stylegan2-ada-pytorch/training/networks.py`, so official state loads 1:1.
Modulated convolutions use the official "non-fused" formulation (scale activations, shared-weight conv,
demodulate after), which is exactly equivalent and runs fast on CPU and GPU without grouped convolutions.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .ops import (bias_act, conv2d_resample, downsample2d, normalize_2nd_moment, setup_filter,
                  upsample2d)

NOISE_MODES = ("const", "random", "none")


def frozen_cached(module: nn.Module, key: str, weight: torch.Tensor, dtype: torch.dtype, fn):
    """`fn()` memoised on the module while `weight` is frozen (inversion): keyed by the weight's in-place
    version, device, dtype and inference mode, so training (requires_grad) and any weight update recompute."""
    if weight.requires_grad:
        return fn()
    ck = (weight._version, weight.device, dtype, torch.is_inference_mode_enabled())
    cache = module.__dict__.setdefault("_frozen_cache", {})
    hit = cache.get(key)
    if hit is not None and hit[0] == ck:
        return hit[1]
    value = fn()
    cache[key] = (ck, value)
    return value


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: `weight [out, in]`, `bias [out]`, optional lrelu."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = frozen_cached(self, "w", self.weight, x.dtype, lambda: self.weight.to(x.dtype) * self.weight_gain)
        b = self.bias
        if b is not None:
            b = frozen_cached(self, "b", b, x.dtype, lambda: self.bias.to(x.dtype) * self.bias_gain)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv with optional FIR up/down-sampling, bias, activation and clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = frozen_cached(self, "w", self.weight, x.dtype, lambda: self.weight.to(x.dtype) * self.weight_gain)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        act_gain = (math.sqrt(2) if self.activation == "lrelu" else 1.0) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=clamp)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     weight_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample modulated (and demodulated) conv: x `[N,I,H,W]`, weight `[O,I,k,k]`, styles `[N,I]`.

    `weight_sq` `[I, O]` = sum over the kernel of weight^2, transposed (pass it to reuse a cached copy)."""
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    x = x * styles[:, :, None, None]
    x = conv2d_resample(x, weight, resample_filter, up=up, padding=padding)
    if demodulate:
        # sum_{i,k} (w_oik s_i)^2 == (s^2) @ (sum_k w_oik^2)^T: same demod coefficients, no [N,O,I,k,k] tensor.
        if weight_sq is None:
            weight_sq = weight.square().sum(dim=[2, 3]).t()
        dcoefs = (styles.square() @ weight_sq.to(styles.dtype) + 1e-8).rsqrt()
        x = x * dcoefs[:, :, None, None]
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


class MappingNetwork(nn.Module):
    """z `[N, z_dim]` (+ optional class c) -> ws `[N, num_ws, w_dim]`; tracks `w_avg` for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = False) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this generator is conditional (c_dim={self.c_dim}); pass a class vector c")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = torch.cat([self.w_avg.to(x.dtype).lerp(x[:, :cutoff], truncation_psi), x[:, cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+2x upsampling), per-pixel noise with learned strength, bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, noise_mode: str = "random",
                noise: torch.Tensor | None = None, gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)
        noise_term = None
        if self.use_noise:
            if noise is not None:
                noise_term = noise * self.noise_strength
            elif noise_mode == "random":
                noise_term = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                         device=x.device, dtype=x.dtype) * self.noise_strength
            elif noise_mode == "const":
                noise_term = self.noise_const * self.noise_strength
        dtype = x.dtype
        weight = frozen_cached(self, "w", self.weight, dtype, lambda: self.weight.to(dtype))
        weight_sq = frozen_cached(self, "wsq", self.weight, dtype,
                                  lambda: self.weight.float().square().sum(dim=[2, 3]).t().contiguous())
        x = modulated_conv2d(x, weight, styles, noise=noise_term, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, weight_sq=weight_sq)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=math.sqrt(2) * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, kernel_size: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        dtype = x.dtype
        weight = frozen_cached(self, "w", self.weight, dtype, lambda: self.weight.to(dtype))
        x = modulated_conv2d(x, weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture synthesis network: (const | up-conv), conv, toRGB."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, *, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_noise: bool = True):
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"only the 'skip' synthesis architecture is supported, got {architecture!r}")
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        common = dict(resample_filter=resample_filter, conv_clamp=conv_clamp, use_noise=use_noise)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **common)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **common)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def conv_layers(self) -> list[SynthesisLayer]:
        return [layer for layer in (getattr(self, "conv0", None), self.conv1) if layer is not None]

    def noise_layers(self) -> list[SynthesisLayer]:
        return [layer for layer in self.conv_layers() if layer.use_noise]

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, *,
                noise_mode: str = "random", noises: Sequence[torch.Tensor | None] = (None, None),
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        n_iter = iter(noises)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, noise=next(n_iter))
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, noise=next(n_iter))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter))
        img = y if img is None else img + y.to(img.dtype)
        return x, img


class SynthesisNetwork(nn.Module):
    """ws `[N, num_ws, w_dim]` -> image `[N, img_channels, R, R]` in about [-1, 1]."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 3, *, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, conv_clamp: float | None = None,
                 architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 use_noise: bool = True, channels_by_res: Mapping[int | str, int] | None = None):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution != 2 ** log2 or img_resolution < 4:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_fp16_res = num_fp16_res  # kept for config fidelity; precision is chosen by autocast here
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        # Our own option, not the official one: widens chosen blocks (e.g. only the coarse 4x4 and 8x8, where a
        # face's layout is chosen) without the cost of widening every finer one. Keys may be strings (JSON).
        for res, ch in (channels_by_res or {}).items():
            if int(res) not in channels or int(ch) < 1:
                raise ValueError(f"channels_by_res: {res} px -> {ch} channels; resolutions are "
                                 f"{self.block_resolutions}, channels at least 1")
            channels[int(res)] = int(ch)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, channels[res], w_dim, res, img_channels, res == img_resolution,
                                   architecture=architecture, resample_filter=resample_filter,
                                   conv_clamp=conv_clamp, use_noise=use_noise)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """Layers with a noise input, in the order `noises=` expects."""
        return [layer for block in self.blocks() for layer in block.noise_layers()]

    def noise_buffers(self) -> list[torch.Tensor]:
        """The constant noise maps `[1, 1, r, r]` (copies) in `noise_layers()` order, for optimisation."""
        return [layer.noise_const.detach().clone()[None, None] for layer in self.noise_layers()]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", *,
                noises: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        dtype = torch.get_autocast_dtype(ws.device.type) if torch.is_autocast_enabled(ws.device.type) \
            else torch.float32
        noise_iter = iter(noises) if noises is not None else None
        x = img = None
        w_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            block_noises = [next(noise_iter) if noise_iter is not None and layer.use_noise else None
                            for layer in block.conv_layers()]
            x, img = block(x, img, block_ws, noise_mode=noise_mode, noises=block_noises, dtype=dtype)
        return img.float()


class Generator(nn.Module):
    """StyleGAN2 generator: `G(z) = G.synthesis(G.mapping(z))`; contract: z_dim, w_dim, num_ws, img_resolution."""

    arch = "stylegan2"

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


class DiscriminatorBlock(nn.Module):
    """Residual discriminator block: (fromRGB), conv, downsampling conv, 1x1 downsampling skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, *, architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        if architecture != "resnet":
            raise ValueError(f"only the 'resnet' discriminator architecture is supported, got {architecture!r}")
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        common = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, down=2, resample_filter=resample_filter, **common)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=np.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the per-group feature standard deviation as extra channels."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # Largest group size <= group_size dividing the batch (the official code asserts divisibility).
        # group_size None = the whole batch (official meaning; TF-converted networks may carry it).
        g = max(d for d in range(1, min(self.group_size or n, n) + 1) if n % d == 0)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)
        y = y.repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-stddev, conv, fc, out -> logits `[N, 1]`."""

    def __init__(self, in_channels: int, resolution: int, img_channels: int, *, mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1, activation: str = "lrelu", conv_clamp: float | None = None):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image `[N, 3, R, R]` in [-1, 1] -> logits `[N, 1]`; exposes features."""

    def __init__(self, c_dim: int = 0, img_resolution: int = 1024, img_channels: int = 3, *,
                 architecture: str = "resnet", channel_base: int = 32768, channel_max: int = 512,
                 num_fp16_res: int = 0, conv_clamp: float | None = None, cmap_dim: int | None = None,
                 block_kwargs: dict | None = None, mapping_kwargs: dict | None = None,
                 epilogue_kwargs: dict | None = None):
        super().__init__()
        if c_dim != 0:
            raise ValueError("conditional discriminators (c_dim > 0) are not supported")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        for res in self.block_resolutions:
            in_ch = channels[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, channels[res], channels[res // 2], res, img_channels,
                                                        architecture=architecture, conv_clamp=conv_clamp,
                                                        **(block_kwargs or {})))
        self.b4 = DiscriminatorEpilogue(channels[4], 4, img_channels, conv_clamp=conv_clamp,
                                        **(epilogue_kwargs or {}))

    def features(self, img: torch.Tensor, *, max_blocks: int | None = None) -> list[torch.Tensor]:
        """Block outputs from high to low resolution: `[N, C_r, R/2, R/2]`, ... (a domain perceptual space)."""
        feats: list[torch.Tensor] = []
        x = None
        for res in self.block_resolutions[:max_blocks]:
            x = getattr(self, f"b{res}")(x, img)
            feats.append(x)
        return feats

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(img)[-1] if self.block_resolutions else img
        return self.b4(x)
