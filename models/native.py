"""Native checkpoint format: `NAME.safetensors` (tensors `G.*`, `D.*`) + `NAME.json` (a ModelConfig).

`save_model` writes both files; `load_native` reads them back strictly (see strict_load). Storage dtype
is float32 by default (bit-identical round trip) or float16 to halve the file size.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import ModelConfig, build_discriminator, build_generator
from .strict_load import CheckpointError, load_strict


def native_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, config) paths for a `.safetensors`, `.json` or extension-less stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_model(path: str | Path, config: ModelConfig, G: nn.Module, D: nn.Module | None = None, *,
               dtype: torch.dtype = torch.float32) -> Path:
    """Write weights and config; returns the `.safetensors` path."""
    weights, cfg = native_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"G.{k}": v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in G.state_dict().items()}
    if D is not None:
        tensors.update({f"D.{k}": v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                        for k, v in D.state_dict().items()})
    if D is None and config.d_kwargs is not None:
        config = config.replace(d_kwargs=None)
    save_file(tensors, str(weights), metadata={"format": "latentbrush", "arch": config.arch})
    cfg.write_text(config.to_json())
    return weights


def load_native(path: str | Path, *, device: str | torch.device = "cpu",
                with_discriminator: bool = True) -> tuple[ModelConfig, nn.Module, nn.Module | None]:
    """Read a native checkpoint -> (config, G, D or None), both in eval mode on `device`."""
    weights, cfg = native_paths(path)
    for f in (weights, cfg):
        if not f.is_file():
            raise CheckpointError(f"native checkpoint: {f} not found (needs both .safetensors and .json)")
    try:  # malformed JSON, another format_version, unknown keys or network kwargs
        config = ModelConfig.from_json(cfg.read_text())
        G = build_generator(config)
        D = build_discriminator(config) if with_discriminator else None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{cfg}: not a usable model config ({exc})") from exc
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from exc
    load_strict(G, {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}, what=f"{weights.name} G")
    d_state = {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}
    if D is not None:
        load_strict(D, d_state, what=f"{weights.name} D")
    other = sorted(k for k in tensors if not k.startswith(("G.", "D.")))
    if other:
        raise CheckpointError(f"{weights.name}: unexpected tensors {other[:10]}")
    return config, G.to(device).eval(), (D.to(device).eval() if D is not None else None)
