"""GAN-inversion engine: degradation operators, losses and the streamed optimisation loop (no UI, no PIL).

Public API: `prepare(loaded_model, device=...)` -> EngineModel; `run(engine_model, request)` -> Iterator[Frame];
`start_run(engine_model, request)` -> RunHandle (the same run on its own thread: wait with a timeout, cancel).
`config.tuning = TuningConfig(steps=N)` adds pivotal tuning after the latent search (engine/tuning.py).
Data contract: engine/types.py.
"""
from .handle import RunHandle, start_run
from .inversion import run
from .model import EngineModel, prepare
from .tasks import TaskDefaults, default_config, operators_for, project_target, request_for_task
from .types import (EngineError, Frame, InversionConfig, InversionRequest, LossWeights, OperatorSpec, TuningConfig,
                    known_from_fill_mask, known_from_strokes)

__all__ = ["EngineError", "EngineModel", "Frame", "InversionConfig", "InversionRequest", "LossWeights",
           "OperatorSpec", "TaskDefaults", "default_config", "known_from_fill_mask", "known_from_strokes",
           "operators_for", "RunHandle", "prepare", "project_target", "request_for_task", "run", "start_run", "TuningConfig"]
