"""Derive the face alignment template from face64's training crops.

    python -m app.face_template --data ../shared/data/faces-utk-128 --out assets/face_template.json

Runs dlib's HOG face detector and 68-point landmark predictor (via `app.face_align.detect_landmarks`) on
an evenly spaced selection of the UTKFace aligned & cropped images (every k-th file in name order),
skips images where no face is found, normalises each landmark to [0, 1] relative to the crop as
``(x + 0.5) / width`` (pixel centres at integers, so the template is resolution-independent), and writes
the mean (and the per-point standard deviation, for reference) as JSON. Only these derived numbers
are committed, never the images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from app.face_align import NUM_LANDMARKS, detect_landmarks

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CROP_NOTE = "UTKFace aligned&cropped, as used to train face64"


def build_template(data: Path, *, count: int = 400) -> dict:
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {data}")
    step = max(1, len(files) // count)
    chosen = files[::step][:count]
    points, skipped, sizes = [], 0, set()
    for path in chosen:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        found = detect_landmarks(rgb)
        if isinstance(found, str):
            raise SystemExit(found)
        if found is None:
            skipped += 1
            continue
        pts, _box, _n = found
        h, w = rgb.shape[:2]
        sizes.add(f"{w}x{h}")
        points.append((pts.astype(np.float64) + 0.5) / np.array([w, h], dtype=np.float64))
    if not points:
        raise SystemExit("no face found in any selected image")
    stack = np.stack(points)
    assert stack.shape[1:] == (NUM_LANDMARKS, 2)
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    return {
        "landmarks68": [[round(float(x), 5), round(float(y), 5)] for x, y in mean],
        "landmarks68_std": [[round(float(x), 5), round(float(y), 5)] for x, y in std],
        "source": (f"mean of dlib 68-point landmarks (HOG detector + shape_predictor_68_face_landmarks) on "
                   f"every {step}th image (name order) of {data.name}/ ({len(files)} images, "
                   f"{'/'.join(sorted(sizes))} px); coordinates are "
                   "(x + 0.5) / width, (y + 0.5) / height"),
        "images_tried": len(chosen),
        "images_used": len(points),
        "crop": CROP_NOTE,
        "made_by": "python -m app.face_template",
    }


def to_json(template: dict) -> str:
    """Pretty JSON with one [x, y] point per line."""
    lines = []
    for key, value in template.items():
        if key.startswith("landmarks"):
            pts = ",\n".join(f"    [{x}, {y}]" for x, y in value)
            lines.append(f"  {json.dumps(key)}: [\n{pts}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    assert json.loads(text) == template
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.face_template", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of UTKFace aligned crops")
    ap.add_argument("--out", type=Path, default=Path("assets/face_template.json"))
    ap.add_argument("--count", type=int, default=400, help="how many images to try (default 400)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    template = build_template(args.data, count=args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(template), encoding="utf-8")
    print(f"wrote {args.out}: {template['images_used']} of {template['images_tried']} images used "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
