"""Save/load of an editing state (latent, noises, config, step) so a run can be resumed or rewound.

File: `torch.save` of plain tensors, strings and ints only (loaded with `weights_only=True`).
A result of pivotal tuning (engine/tuning.py) also records `tuned: True` and its fp16 synthesis weight deltas
(about 2 bytes per weight: 5.8 MB for the bundled 64 px models), because its latent alone does not give its
picture: `synthesis_for(model, state)` rebuilds the tuned synthesis, and `require_untuned(state)` refuses, with
a message, to continue a latent search from a tuned result as if the generator were the shared one.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .types import EngineError, InversionConfig, LossWeights, TuningConfig


@dataclass(frozen=True)
class EditState:
    latent: torch.Tensor
    latent_space: str
    step: int
    model_name: str
    config: InversionConfig
    noises: tuple[torch.Tensor, ...] | None = None
    weight_deltas: dict[str, torch.Tensor] | None = None

    @property
    def tuned(self) -> bool:
        return bool(self.weight_deltas)


def save_state(path: str | Path, state: EditState) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.asdict(state.config)
    torch.save({"latent": state.latent.detach().cpu(), "latent_space": state.latent_space, "step": int(state.step),
                "model_name": state.model_name, "config": json.dumps(cfg),
                "noises": [n.detach().cpu() for n in state.noises] if state.noises else [],
                "tuned": state.tuned,
                "weight_deltas": {k: v.detach().cpu().to(torch.float16) for k, v in (state.weight_deltas or {}).items()}},
               path)
    return path


def load_state(path: str | Path) -> EditState:
    try:
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
        cfg = json.loads(d["config"])
        cfg["weights"] = LossWeights(**cfg["weights"])
        cfg["tuning"] = TuningConfig(**cfg.get("tuning", {}))
        deltas = d.get("weight_deltas") or None
        if d.get("tuned") and not deltas:
            raise ValueError("it is marked tuned but holds no weight deltas")
        return EditState(latent=d["latent"], latent_space=d["latent_space"], step=int(d["step"]),
                         model_name=d["model_name"], config=InversionConfig(**cfg),
                         noises=tuple(d["noises"]) or None, weight_deltas=deltas)
    except Exception as exc:
        raise EngineError(f"{Path(path).name} is not a LatentBrush editing state ({exc})") from exc


def synthesis_for(G: nn.Module, state: EditState) -> nn.Module:
    """The synthesis network that made the state's picture: G's own, or a tuned copy rebuilt from the deltas."""
    if not state.tuned:
        return G.synthesis
    from .tuning import tuned_synthesis
    return tuned_synthesis(G, state.weight_deltas)


def require_untuned(state: EditState, *, what: str = "continue the latent search") -> None:
    """Raise EngineError when `state` is a tuned result: its latent was fitted with the shared generator, and the
    picture it shows needs the tuned weights, so going on from it with the shared generator would silently
    change the picture."""
    if state.tuned:
        raise EngineError(f"this result was made with a tuned generator ({state.config.tuning.steps} tuning steps "
                          f"after step {state.config.steps}); cannot {what} with the shared, untuned generator. "
                          "Start a new run from the image instead, or use the saved tuning "
                          "(engine.state.synthesis_for) to render it.")
