"""Front door for weights: `load_model(name_or_path)` / `load_generator(...)` for every supported format.

Names resolve to bundled models (`assets/models/NAME.json`, or `$LATENTBRUSH_MODELS`) first, then to
catalogue entries (downloaded on first use). Paths dispatch on suffix: `.safetensors`/`.json` native,
`.pkl` official StyleGAN2-ADA pickle (restricted unpickler), `.pt`/`.pth` rosinality `g_ema`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .catalogue import CATALOGUE, fetch
from .config import ModelConfig
from .native import load_native, native_paths
from .official_pickle import load_official_pickle
from .rosinality import load_rosinality
from .strict_load import CheckpointError

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
SUFFIXES = (".safetensors", ".json", ".pkl", ".pt", ".pth")


@dataclass(frozen=True)
class LoadedModel:
    """A generator (eval mode, no grad), its optional discriminator, and its config."""

    config: ModelConfig
    G: nn.Module
    D: nn.Module | None


def models_dir() -> Path:
    return Path(os.environ.get("LATENTBRUSH_MODELS", DEFAULT_MODELS_DIR))


def bundled_names() -> list[str]:
    """Names of the models shipped in the models folder."""
    d = models_dir()
    return sorted(p.stem for p in d.glob("*.json") if p.with_suffix(".safetensors").is_file()) if d.is_dir() else []


def _bundled_config(key: str) -> Path | None:
    """A bundled model's `.json`, which shadows a catalogue entry or file of the same name."""
    path = models_dir() / f"{key}.json"
    return path if "/" not in key and path.is_file() else None


def model_file(name_or_path: str | Path) -> Path:
    """The file a name or path loads its weights from: a bundled model's `.safetensors`, a catalogue entry's pickle
    (downloaded on first use), a native `.json`'s `.safetensors`, or the path itself; CheckpointError if none."""
    key = str(name_or_path)
    if (bundled := _bundled_config(key)) is not None:
        return native_paths(bundled)[0]
    if key in CATALOGUE:
        return fetch(CATALOGUE[key])
    path = Path(key)
    if not path.exists():
        raise CheckpointError(f"unknown model {key!r}: not a file, not a bundled model "
                              f"({', '.join(bundled_names()) or 'none'}) and not in the catalogue "
                              f"({', '.join(CATALOGUE)})")
    return native_paths(path)[0] if path.suffix.lower() == ".json" else path


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu",
               with_discriminator: bool = True) -> LoadedModel:
    """Load any supported checkpoint by bundled/catalogue name or path; fails loudly with a reason."""
    key = str(name_or_path)
    path = model_file(key)
    if key in CATALOGUE and _bundled_config(key) is None:
        entry = CATALOGUE[key]
        config, G, D = load_official_pickle(path, device=device, name=key, with_discriminator=with_discriminator,
                                            info=dict(domain=entry.domain, licence=entry.licence))
        return _finish(config, G, D)
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".json"):
        config, G, D = load_native(path, device=device, with_discriminator=with_discriminator)
    elif suffix == ".pkl":
        config, G, D = load_official_pickle(path, device=device, with_discriminator=with_discriminator)
    elif suffix in (".pt", ".pth"):
        config, G, D = load_rosinality(path, device=device)
    else:
        raise CheckpointError(f"{path.name}: unsupported model file type {suffix!r} (expected one of {SUFFIXES})")
    return _finish(config, G, D)


def _finish(config: ModelConfig, G: nn.Module, D: nn.Module | None) -> LoadedModel:
    G.requires_grad_(False)
    if D is not None:
        D.requires_grad_(False)
    return LoadedModel(config=config, G=G, D=D)


def load_generator(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Just the generator (see `load_model`)."""
    return load_model(name_or_path, device=device, with_discriminator=False).G
