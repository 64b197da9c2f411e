"""Model configuration (frozen dataclass) and construction of networks from it.

A `ModelConfig` fully describes a generator/discriminator pair: architecture, constructor kwargs and
provenance (domain, licence, training data, figures). It serialises to the JSON beside native weights.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .stylegan2 import Discriminator, Generator

ARCHS = ("stylegan2", "dcgan")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    """What a checkpoint is: `arch` in ARCHS, network kwargs, and human-facing provenance."""

    arch: str
    g_kwargs: dict[str, Any]
    d_kwargs: dict[str, Any] | None = None
    name: str = "unnamed"
    domain: str = "unknown"
    licence: str = "unknown"
    provenance: str = ""
    w_avg_known: bool = True
    images_seen: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    # Per-task overrides of the engine's defaults, chosen with this model's gallery ({task: {setting: value,
    # "weights": {loss: weight}}}; applied and checked by engine.tasks.default_config): a weak generator may
    # need a tighter search than the defaults made for strong ones.
    task_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {ARCHS}")

    @property
    def resolution(self) -> int:
        return int(self.g_kwargs["img_resolution"])

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json.loads(text)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported model config format_version {version!r} (expected {FORMAT_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys in model config: {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def build_generator(config: ModelConfig) -> nn.Module:
    """A freshly initialised generator of the configured architecture."""
    if config.arch == "stylegan2":
        return Generator(**config.g_kwargs)
    return DCGANGenerator(**config.g_kwargs)


def build_discriminator(config: ModelConfig) -> nn.Module | None:
    """A freshly initialised discriminator, or None when the config has none."""
    if config.d_kwargs is None:
        return None
    if config.arch == "stylegan2":
        return Discriminator(**config.d_kwargs)
    return DCGANDiscriminator(**config.d_kwargs)


def small_stylegan2_config(*, resolution: int = 64, channel_base: int = 4096, channel_max: int = 128,
                           z_dim: int = 128, w_dim: int = 128, mapping_layers: int = 2,
                           with_d: bool = True, **info: Any) -> ModelConfig:
    """A StyleGAN2 sized for CPU training/tests (same code as the full-size network, fewer channels)."""
    g = dict(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
             mapping_kwargs=dict(num_layers=mapping_layers),
             synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max))
    d = dict(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=channel_base,
             channel_max=channel_max) if with_d else None
    return ModelConfig(arch="stylegan2", g_kwargs=g, d_kwargs=d, **info)


def dcgan_config(*, z_dim: int = 100, ngf: int = 64, ndf: int = 64, with_d: bool = True, **info: Any) -> ModelConfig:
    """The classic 64x64 DCGAN."""
    return ModelConfig(arch="dcgan", g_kwargs=dict(z_dim=z_dim, img_resolution=64, ngf=ngf),
                       d_kwargs=dict(img_resolution=64, ndf=ndf) if with_d else None, **info)
