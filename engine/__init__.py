"""GAN-inversion engine: degradation operators, losses and the streamed optimisation loop (no UI, no PIL).

Public API: `prepare(loaded_model, device=...)` -> EngineModel; `run(engine_model, request)` -> Iterator[Frame].
Data contract: engine/types.py.
"""
from .inversion import run
from .model import EngineModel, prepare
from .tasks import default_config, operators_for, project_target, request_for_task
from .types import (EngineError, Frame, InversionConfig, InversionRequest, LossWeights, OperatorSpec,
                    known_from_fill_mask, known_from_strokes)

__all__ = ["EngineError", "EngineModel", "Frame", "InversionConfig", "InversionRequest", "LossWeights",
           "OperatorSpec", "default_config", "known_from_fill_mask", "known_from_strokes", "operators_for",
           "prepare", "project_target", "request_for_task", "run"]
