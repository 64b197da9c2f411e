"""Which part of a user's photo the model sees: `frame_photo` -> a `engine.photo.Placement` and a note.

Face models (`is_face_model`: a human-face domain such as face64's UTKFace or FFHQ) get the face aligned onto the
face template (dlib, `engine.face_align`); when no face is found, or for other models, the square `crop`
(default: the centred square) is used. The CLI, the gallery and the app all frame photos through this.
"""
from __future__ import annotations

import logging
import re

import numpy as np

from .photo import CropBox, Placement, crop_placement

log = logging.getLogger(__name__)
_FACES = re.compile(r"face|ffhq|celeba", re.IGNORECASE)
_ANIMALS = re.compile(r"\b(cats?|dogs?|wild|animals?)\b", re.IGNORECASE)


def is_face_model(name: str, domain: str = "") -> bool:
    """A model of human faces (aligned framing), judged from its name and domain text."""
    text = f"{name} {domain}"
    return bool(_FACES.search(text)) and not _ANIMALS.search(domain or name)


def frame_photo(rgb: np.ndarray, size: int, *, align_face: bool, crop: CropBox | None = None
                ) -> tuple[Placement, str]:
    """(placement, note for the user). `align_face`: try face alignment first; `crop` otherwise (or on failure)."""
    h, w = rgb.shape[:2]
    if align_face:
        from . import face_align  # noqa: PLC0415 - dlib loads only when a face model frames a photo
        try:
            result = face_align.align_face(rgb, size=size)
        except Exception as exc:  # noqa: BLE001 - alignment is optional: fall back to the crop
            log.warning("face alignment failed", exc_info=True)
            result, reason = None, f"face alignment failed ({type(exc).__name__})"
        else:
            reason = result.notice
        if result is not None and result.found and result.placement is not None:
            note = "face aligned to the model's framing" + (f" ({reason})" if reason else "")
            return result.placement, note
        fallback = crop_placement((h, w), size, crop)
        return fallback, f"no face aligned ({reason or 'no face found'}); {_crop_note(fallback, w, h)}"
    p = crop_placement((h, w), size, crop)
    return p, _crop_note(p, w, h)


def _crop_note(p: Placement, w: int, h: int) -> str:
    b = p.box
    where = "whole" if (b.side, b.side) == (w, h) else f"{b.side}x{b.side} square at ({b.x}, {b.y}) of"
    return f"used the {where} {w}x{h} photo at {p.size}x{p.size}"
