"""Perceptual feature extractors and the LPIPS-style distance between their features.

Extractors map float images `[N, 3, R, R]` in [-1, 1] to a list of feature maps `[N, C_i, H_i, W_i]`.
- 'discriminator': the model's own discriminator blocks (domain features; always there for bundled models).
- 'vgg16': torchvision VGG16 with ImageNet weights: found locally (a file path, `$LATENTBRUSH_VGG16`, the
  LatentBrush cache or torch hub's cache), else downloaded once into the LatentBrush cache (torchvision's file,
  hash-checked, progress bar). Offline or failing -> fallback with a message saying where to put the file,
  never silently; a failed download is not retried in the same process (runs fall back at once).
- 'vgg16-random': a VGG16-sized network with random weights (benchmarks only; the score means nothing).
- 'mobilenet': ImageNet MobileNetV2 shipped in `assets/models/perceptual/` (Apache-2.0, converted from TFLite),
  block outputs at strides 2..32 on inputs resized into 64..256 px; works offline for every model.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models import catalogue
from models.mobilenet import input_affine
from models.strict_load import CheckpointError

from .types import EngineError, InversionConfig

log = logging.getLogger(__name__)
VGG16_FILE = catalogue.VGG16.filename  # torchvision's name for its ImageNet VGG16 weights
_VGG16_DOWNLOAD_TIMEOUT_S = 10.0
_vgg16_download_failed: str | None = None  # why the download failed, once per process
_VGG_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

FeatureFn = Callable[[torch.Tensor], list[torch.Tensor]]


class DiscriminatorFeatures(nn.Module):
    """Block outputs of a (frozen) discriminator with a `features(img)` method."""

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D = D

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.D.features(x)


class VGG16Features(nn.Module):
    """VGG16 conv features at relu1_2..relu5_3 on ImageNet-normalised input, resized to 256 px if larger."""

    def __init__(self, state_dict: dict | None) -> None:
        super().__init__()
        from torchvision.models import vgg16
        net = vgg16(weights=None)
        if state_dict is not None:
            net.load_state_dict(state_dict)
        self.features = net.features[: _VGG_TAPS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] > 256:
            x = F.interpolate(x, size=(256, 256), mode="area")
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG_TAPS:
                feats.append(x)
        return feats


class MobileNetFeatures(nn.Module):
    """MobileNetV2 block outputs at strides 2, 4, 8, 16, 32 (see `models.mobilenet.FEATURE_BLOCKS`).

    Inputs are resized into MOBILENET_SIZES (area down, bilinear up) and mapped from [-1, 1] to the range the
    converted TFLite model expects (its input quantisation, read from the sidecar)."""

    def __init__(self, net: nn.Module, meta: dict) -> None:
        super().__init__()
        self.net = net
        self.gain, self.offset = input_affine(meta)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-1]
        lo, hi = MOBILENET_SIZES
        if size > hi:
            x = F.interpolate(x, size=(hi, hi), mode="area")
        elif size < lo:
            x = F.interpolate(x, size=(lo, lo), mode="bilinear", align_corners=False)
        return self.net.features(x * self.gain + self.offset)


MOBILENET_SIZES = (64, 256)


@functools.lru_cache(maxsize=4)
def _mobilenet(device: str) -> tuple[nn.Module, dict]:
    # One frozen copy per device, shared by every run (read-only in forward).
    from models.mobilenet import load_mobilenet
    return load_mobilenet(device=device)


def find_vgg16_weights(path: str | Path | None = None) -> Path | None:
    """Local ImageNet VGG16 weights: explicit path, `$LATENTBRUSH_VGG16`, the LatentBrush cache (where
    `download_vgg16_weights` puts them) or torch hub's cache; else None."""
    candidates = [path, os.environ.get("LATENTBRUSH_VGG16"), catalogue.cache_dir() / VGG16_FILE]
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / VGG16_FILE
    candidates.append(hub)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def download_vgg16_weights() -> tuple[Path | None, str]:
    """(path, "") after downloading torchvision's VGG16 file into the LatentBrush cache (hash-checked, with a
    progress bar), or (None, why) when that fails; a failure is remembered, so later runs do not wait again."""
    global _vgg16_download_failed
    if _vgg16_download_failed is not None:
        return None, _vgg16_download_failed
    entry = catalogue.VGG16
    log.info("downloading %s (%s) into %s", entry.filename, entry.url, catalogue.cache_dir())
    try:
        return catalogue.fetch(entry, timeout=_VGG16_DOWNLOAD_TIMEOUT_S), ""
    except CheckpointError as exc:
        _vgg16_download_failed = str(exc)
        return None, _vgg16_download_failed


def requested_kind(cfg: InversionConfig) -> str:
    """The feature network a config asks for: its `perceptual` choice, or 'none' when that loss is off."""
    return cfg.perceptual if cfg.weights.perceptual > 0 else "none"


def build_extractor(kind: str, *, D: nn.Module | None, device: torch.device,
                    vgg_path: str | Path | None = None) -> tuple[nn.Module | None, str, tuple[str, ...]]:
    """-> (extractor or None, the kind actually used, user-facing messages about any fallback)."""
    messages: list[str] = []
    if kind == "none":
        return None, "none", ()
    if kind == "discriminator":
        if D is not None and hasattr(D, "features"):
            return DiscriminatorFeatures(D).to(device).eval(), "discriminator", ()
        messages.append("this model has no discriminator: trying VGG16 features instead")
        kind = "vgg16"
    if kind == "vgg16":
        weights = find_vgg16_weights(vgg_path)
        why = ""
        if weights is None:
            weights, why = download_vgg16_weights()
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            return VGG16Features(state).to(device).eval(), "vgg16", tuple(messages)
        messages.append(f"VGG16 ImageNet weights not found and not downloadable ({why}). Put {VGG16_FILE} "
                        f"({catalogue.VGG16.url}) at {catalogue.cache_dir() / VGG16_FILE} or set "
                        "LATENTBRUSH_VGG16 to its path: perceptual loss disabled, pixel losses only")
        for m in messages:
            log.warning(m)
        return None, "none", tuple(messages)
    if kind == "mobilenet":
        try:
            net, meta = _mobilenet(str(device))
        except CheckpointError as exc:  # the shipped asset is part of the app: broken means a broken install
            raise EngineError(f"the mobilenet perceptual network could not be loaded: {exc}") from exc
        return MobileNetFeatures(net, meta).eval(), "mobilenet", ()
    if kind == "vgg16-random":
        torch.manual_seed(0)
        return VGG16Features(None).to(device).eval(), "vgg16-random", (
            "vgg16-random: random weights, for timing only",)
    raise ValueError(f"unknown perceptual backbone {kind!r}")


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f * (f.square().sum(dim=1, keepdim=True) + 1e-8).rsqrt()


def feature_distance(fa: list[torch.Tensor], fb: list[torch.Tensor],
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """LPIPS-style: channel-unit-normalised squared difference, (weighted) spatial mean, summed over layers.

    Returns `[N]`. `weight` `[N, 1, R, R]` (1 = known) is area-resized to each layer.
    """
    total = None
    for a, b in zip(fa, fb):
        d = (_unit(a.float()) - _unit(b.float())).square().sum(dim=1, keepdim=True)
        if weight is not None:
            wl = F.adaptive_avg_pool2d(weight, d.shape[-2:])
            v = (d * wl).sum(dim=[1, 2, 3]) / wl.sum(dim=[1, 2, 3]).clamp_min(1e-8)
        else:
            v = d.mean(dim=[1, 2, 3])
        total = v if total is None else total + v
    return total
