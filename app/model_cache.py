"""Which models the app offers, and a thread-safe LRU cache of prepared models (load + prepare once per key).

A model *choice* is what the UI's dropdown (or an API caller) sends: a bundled name (`assets/models/`, or
`$LATENTBRUSH_MODELS`), a catalogue name (downloaded on first use), a checkpoint path the operator gave
with `--model` or `--models`, or a path inside the models/cache folders (checked with `app.uploads.safe_model_path`).
Nothing here loads weights except `ModelCache.get`.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import engine
from models import CheckpointError, ModelConfig, load_model
from models.catalogue import CATALOGUE, cache_dir
from models.loader import bundled_names, models_dir

from .settings import PREFERRED_MODELS, Settings
from .uploads import UploadError, safe_model_path

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ choices

def ordered_bundled() -> list[str]:
    """Bundled model names, the preferred ones (cat64, face64, cat64-vanilla) first."""
    names = bundled_names()
    return [n for n in PREFERRED_MODELS if n in names] + [n for n in names if n not in PREFERRED_MODELS]


def default_model(settings: Settings) -> str | None:
    if settings.model:
        return settings.model
    names = ordered_bundled()
    return names[0] if names else None


def model_choices(settings: Settings) -> list[tuple[str, str]]:
    """(label, value) pairs for the dropdown: bundled models, the operator's --model, catalogue entries."""
    choices: list[tuple[str, str]] = []
    for name in ordered_bundled():
        info = describe(name, settings)
        choices.append((f"{name} ({info.resolution} px, {info.domain})", name))
    values = {v for _, v in choices}
    for given in settings.operator_models:
        if given not in values and given not in CATALOGUE:
            choices.append((f"{Path(given).name} (given at start-up)", given))
    for name, entry in CATALOGUE.items():
        cached = (cache_dir() / entry.filename).is_file()
        where = "downloaded" if cached else "download on first use"
        choices.append((f"{name} ({entry.resolution} px, {entry.domain}; {where}; slow on CPU)", name))
    return choices


def resolve(choice: str | None, settings: Settings) -> str:
    """The key `load_model` understands, or UploadError with a message for the user."""
    value = (choice or "").strip()
    if not value:
        raise UploadError("No model is selected. Please choose a model in the 'Model' list.")
    if value in bundled_names() or value in CATALOGUE or value in settings.operator_models:
        return value
    # Anything else is a path typed by a user: only inside the folders models come from.
    return str(safe_model_path(value, allowed_dirs=[models_dir(), cache_dir()]))


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    resolution: int | None
    domain: str
    licence: str
    task_defaults: dict = field(default_factory=dict)  # the model's own overrides of the engine's task defaults


def describe(choice: str | None, settings: Settings) -> ModelInfo:
    """What a choice is, from its JSON config or catalogue entry (no weights loaded; never raises)."""
    value = (choice or "").strip()
    try:
        if value in CATALOGUE:
            e = CATALOGUE[value]
            return ModelInfo("stylegan2", e.resolution, e.domain, e.licence)
        path = models_dir() / f"{value}.json" if value in bundled_names() else Path(value).with_suffix(".json")
        if path.is_file():
            cfg = ModelConfig.from_json(path.read_text(encoding="utf-8"))
            return ModelInfo(cfg.arch, cfg.resolution, cfg.domain, cfg.licence, cfg.task_defaults)
    except (OSError, ValueError, KeyError, TypeError):
        log.info("could not describe model %r", value, exc_info=True)
    return ModelInfo("stylegan2", None, "unknown", "unknown")


# ------------------------------------------------------------------------------------------- cache

Loader = Callable[[str, str], engine.EngineModel]


def load_and_prepare(key: str, device: str) -> engine.EngineModel:
    return engine.prepare(load_model(key, device=device), device=device)


class ModelCache:
    """Prepared models by (key, device), least recently used evicted beyond `maxsize`.

    Thread-safe: concurrent `get`s of the same key load it once (the others wait); different keys load in
    parallel. Load errors propagate (CheckpointError, OSError, ...) and nothing is cached for them.
    """

    def __init__(self, *, device: str = "cpu", maxsize: int = 3, loader: Loader = load_and_prepare) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.device = device
        self.maxsize = maxsize
        self._loader = loader
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], engine.EngineModel] = OrderedDict()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0

    def _hit(self, key: tuple[str, str]) -> engine.EngineModel | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def get(self, name: str) -> engine.EngineModel:
        key = (str(name), self.device)
        if (hit := self._hit(key)) is not None:
            return hit
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if (hit := self._hit(key)) is not None:
                return hit
            log.info("loading model %s on %s", name, self.device)
            model = self._loader(str(name), self.device)
            with self._lock:
                self.loads += 1
                self._items[key] = model
                while len(self._items) > self.maxsize:
                    old, _ = self._items.popitem(last=False)
                    log.info("model cache: evicted %s", old)
                self._key_locks.pop(key, None)
        return model

    def peek(self, name: str) -> engine.EngineModel | None:
        """The cached model or None, without taking a lock: safe in a process forked while another thread held
        one (ZeroGPU's GPU worker, see app.direct); a dict read is atomic, so this sees a consistent cache."""
        return self._items.get((str(name), self.device))

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return (str(name), self.device) in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


__all__ = ["CheckpointError", "ModelCache", "ModelInfo", "UploadError", "default_model", "describe",
           "load_and_prepare", "model_choices", "ordered_bundled", "resolve"]
