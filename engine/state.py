"""Save/load of an editing state (latent, noises, config, step) so a run can be resumed or rewound.

File: `torch.save` of plain tensors, strings and ints only (loaded with `weights_only=True`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .types import EngineError, InversionConfig, LossWeights


@dataclass(frozen=True)
class EditState:
    latent: torch.Tensor
    latent_space: str
    step: int
    model_name: str
    config: InversionConfig
    noises: tuple[torch.Tensor, ...] | None = None


def save_state(path: str | Path, state: EditState) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.asdict(state.config)
    torch.save({"latent": state.latent.detach().cpu(), "latent_space": state.latent_space, "step": int(state.step),
                "model_name": state.model_name, "config": json.dumps(cfg),
                "noises": [n.detach().cpu() for n in state.noises] if state.noises else []}, path)
    return path


def load_state(path: str | Path) -> EditState:
    try:
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
        cfg = json.loads(d["config"])
        cfg["weights"] = LossWeights(**cfg["weights"])
        return EditState(latent=d["latent"], latent_space=d["latent_space"], step=int(d["step"]),
                         model_name=d["model_name"], config=InversionConfig(**cfg),
                         noises=tuple(d["noises"]) or None)
    except Exception as exc:
        raise EngineError(f"{Path(path).name} is not a LatentBrush editing state ({exc})") from exc
