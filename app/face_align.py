"""Automatic face alignment for the app: the engine's `engine.face_align` (the CLI aligns the same way).

This module *is* that module (one object, so patching `app.face_align._backend` in tests patches the engine's).
"""
import sys

from engine import face_align as _face_align

sys.modules[__name__] = _face_align
