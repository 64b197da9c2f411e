"""Images kept PNG-encoded in memory: `PackedImage` is a descriptor that encodes on assignment, decodes on read.

Frames kept for rewinding stay in a session for as long as it lives (up to `frames_kept` per run, several
runs per visitor); held as PNG bytes they take a fraction of the raw arrays (losslessly, so files written
from them are unchanged).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .render import encode_png


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 RGB (RGBA kept, grey stays 2-D)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("could not decode a PNG")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return arr


class PackedImage:
    """`obj.NAME = rgb` stores PNG bytes in `obj.__dict__['_NAME_png']`; `obj.NAME` decodes a fresh array."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_{name}_png"

    def __init__(self, name: str | None = None) -> None:
        self.key = f"_{name}_png" if name else ""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return decode_png(obj.__dict__[self.key])

    def __set__(self, obj: Any, rgb: np.ndarray) -> None:
        obj.__dict__[self.key] = encode_png(np.asarray(rgb, np.uint8))

    @staticmethod
    def nbytes(obj: Any) -> int:
        """Bytes held by all packed images of `obj`."""
        return sum(len(v) for k, v in vars(obj).items() if k.endswith("_png") and isinstance(v, bytes))
