"""Which model stands for which picture domain (cat, face), which domain each tab starts in, and the two UI
events that keep the shared Model list on a fitting model (tab selected, photo uploaded).

Rules (also in the README):
- Each tab starts on its domain's model: Scribble on the cat model, the photo tabs (Inpaint, Reconstruct,
  Colorize, Deblur, Super-resolve, Interpolate) on the face model. A server started with `--model NAME`
  starts every tab on NAME instead.
- Selecting a tab moves the Model list to that tab's model until the visitor picks a model in the list
  themselves; from then on their pick stays.
- Uploading a photo on Inpaint, Reconstruct, Colorize, Deblur or Super-resolve while a cat model is selected:
  when a face is detected (dlib, through `app.face_align`), the list switches to the face model, with a notice.
  Clicking an example selects the model of the example's domain. Nothing else switches by itself.
"""
from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from typing import Any

import gradio as gr

from models.catalogue import CATALOGUE
from models.loader import bundled_names

from .model_cache import default_model, describe
from .settings import DEFAULT_DOMAIN_MODELS, DOMAINS, Settings
from .uploads import UploadError, load_image

log = logging.getLogger(__name__)

TAB_DOMAINS = {"scribble": "cat", "inpaint": "face", "reconstruct": "face", "colorize": "face",
               "deblur": "face", "superres": "face", "interpolate": "face"}
"""The bundled examples of Scribble start with cats; those of every photo tab start with the astronaut's face."""
_CATS = re.compile(r"\bcats?\b", re.IGNORECASE)


# ------------------------------------------------------------------------------------------ parsing

def parse_models(spec: str) -> tuple[tuple[str, str], ...]:
    """`'cat=afhqcat,face=ffhq'` -> (('cat', 'afhqcat'), ('face', 'ffhq')).

    Each model must be a bundled name, a catalogue name or an existing file; ValueError says what is wrong
    and lists what is known."""
    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        domain, sep, name = (x.strip() for x in part.partition("="))
        if not sep or not domain or not name:
            raise ValueError(f"--models: {part!r} is not DOMAIN=MODEL (for example cat=afhqcat,face=ffhq)")
        if domain not in DOMAINS:
            raise ValueError(f"--models: unknown domain {domain!r} in {part!r} (known domains: "
                             f"{', '.join(DOMAINS)})")
        if any(d == domain for d, _ in pairs):
            raise ValueError(f"--models: domain {domain!r} is given twice")
        if not known_model(name):
            raise ValueError(f"--models: unknown model {name!r} for {domain}: not a bundled model "
                             f"({', '.join(bundled_names()) or 'none'}), not in the catalogue "
                             f"({', '.join(CATALOGUE)}) and not an existing file")
        pairs.append((domain, name))
    if not pairs:
        raise ValueError("--models is empty: give DOMAIN=MODEL pairs, for example cat=afhqcat,face=ffhq")
    return tuple(pairs)


def known_model(name: str) -> bool:
    """A bundled name, a catalogue name (downloaded on first use) or an existing checkpoint file."""
    return name in bundled_names() or name in CATALOGUE or Path(name).is_file()


# ------------------------------------------------------------------------------------------ mapping

def domain_models(settings: Settings) -> dict[str, str]:
    """Domain -> model: the operator's `--models`, else the bundled defaults that are present."""
    if settings.models is not None:
        return dict(settings.models)
    present = set(bundled_names())
    return {d: n for d, n in DEFAULT_DOMAIN_MODELS if n in present}


def model_for_tab(settings: Settings, tab: str) -> str | None:
    """The model a tab starts on (None: no model at all)."""
    if settings.model:
        return settings.model
    chosen = domain_models(settings).get(TAB_DOMAINS.get(tab, ""))
    if chosen:
        return chosen
    return default_model(settings)


def domain_of(choice: str | None, settings: Settings) -> str | None:
    """The domain a model choice stands for: by the server's mapping, else 'cat' when its description names
    cats (bundled cat models, afhqcat); None when unknown."""
    value = (choice or "").strip()
    if not value:
        return None
    for domain, name in domain_models(settings).items():
        if name == value:
            return domain
    return "cat" if _CATS.search(describe(value, settings).domain) else None


def domain_model_for_example(settings: Settings, bundled: str | None) -> str | None:
    """An example made for a bundled model (face64, cat64) -> the server's model for that domain, else the
    bundled model itself when present."""
    if not bundled:
        return None
    domain = dict((n, d) for d, n in DEFAULT_DOMAIN_MODELS).get(bundled)
    mapped = domain_models(settings).get(domain or "")
    if mapped:
        return mapped
    return bundled if bundled in bundled_names() else None


def preload_names(settings: Settings) -> list[str]:
    """Models to load at start-up: `--model`, then every domain's model (no repeats)."""
    names = ([settings.model] if settings.model else []) + list(domain_models(settings).values())
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------- events

class ModelFollower:
    """UI events keeping the Model list on a fitting model (see the module docstring for the rules)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_tab(self, tab: str, current: str | None, picked: bool) -> Any:
        """Tab selected -> its model, unless the visitor picked one themselves."""
        if picked:
            return gr.skip()
        target = model_for_tab(self.settings, tab)
        return target if target and target != current else gr.skip()

    def on_photo(self, tab: str, photo: Any, current: str | None) -> Any:
        """Photo uploaded on a photo tab with a cat model selected: the face model when a face is found."""
        face = domain_models(self.settings).get("face")
        if TAB_DOMAINS.get(tab) != "face" or not face or face == current:
            return gr.skip()
        if domain_of(current, self.settings) != "cat":
            return gr.skip()
        if not self.has_face(photo):
            return gr.skip()
        gr.Info(f"A face was found in your photo: switched the model to {Path(face).name} (the face model). "
                "Pick another model in the Model list to use that one instead.")
        return face

    def has_face(self, photo: Any) -> bool:
        """Whether dlib finds a face in an upload (a file path, an array or an image editor value); False when
        detection is unavailable or the upload unreadable (the run reports those)."""
        if isinstance(photo, dict):
            photo = photo.get("background") if photo.get("background") is not None else photo.get("composite")
        if photo is None:
            return False
        try:
            rgb = load_image(photo, max_pixels=self.settings.max_upload_pixels,
                             resize_to_max_side=self.settings.max_upload_side).rgb
            found = importlib.import_module("app.face_align").detect_landmarks(rgb)
        except (UploadError, ImportError, ValueError, OSError):
            log.info("face detection on an upload failed", exc_info=True)
            return False
        return isinstance(found, tuple)


__all__ = ["ModelFollower", "TAB_DOMAINS", "domain_model_for_example", "domain_models", "domain_of",
           "known_model", "model_for_tab", "parse_models", "preload_names"]
