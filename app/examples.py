"""Offline example inputs for every tab (for `gr.Examples`), and the script that makes them.

    python -m app.examples --make        # (re)write everything derived under assets/examples/
    python -m app.examples --make --skip-samples
    python -m app.examples --make --models grumpycat64   # refresh only that model's samples

What lives in assets/examples/ (see LICENSES.md there):
- ``astronaut.png``, ``chelsea.png``: photos copied once from scikit-image's bundled data (public domain /
  CC0). `--make` copies them again only when missing and scikit-image happens to be installed;
  scikit-image is not a dependency.
- made by `--make` from those photos: ``astronaut_face.png`` (automatic alignment, `app.face_align`, to
  face64's framing) and ``chelsea_face.png`` (a fixed square crop framed like AFHQ), 256 px each, and per crop a
  greyscale (``*_gray``), blurred (``*_blur``), 16 px (``*_lowres``) version and an inpaint mask
  (``*_mask``: white = region to fill).
- ``scribble_*_{64,256}.png``: drawn with OpenCV: a few thick colour strokes on white.
- ``mask64_face_eyes.png``, ``mask64_cat_eyes.png``: 64 px inpaint masks over the eye band of face64 /
  cat64 samples.
- ``samples/NAME_SS.png``: 8 samples (seeds 0..7, truncation 0.7) of each bundled model, plus
  greyscale/blurred/16 px versions of sample 02. The bundled models are retrained from time to time:
  re-run `--make` to refresh these.

`examples_for(tab)` lists rows of file paths for one tab, keeping only rows whose files all exist.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
SAMPLES_DIR = EXAMPLES_DIR / "samples"
TABS = ("scribble", "inpaint", "reconstruct", "colorize", "deblur", "superres", "interpolate")

PHOTOS = {"astronaut": "face64", "chelsea": "cat64"}
"""Photos copied from scikit-image's data, and the bundled model each one suits."""
CROP_SIZE = 256
CHELSEA_BOX = (59, -75, 439, 305)
"""(left, top, right, bottom) of the square crop of chelsea.png (451x300) that frames the cat's face like
AFHQ (eyes at mid-height, about 0.4 of the width apart); it reaches past the photo's top and bottom, which
are mirror-padded (fur above the forehead)."""
ASTRONAUT_FALLBACK_BOX = (152, 50, 296, 194)
"""Square crop of astronaut.png used when automatic alignment is unavailable."""
LOWRES = 16            # superres inputs: x4 below the bundled models' 64 px
BLUR_SIGMA_64 = 2.0    # deblur inputs: the engine's default blur (sigma 2 at 64 px), scaled with the size
SAMPLE_SEEDS = range(8)
SAMPLE_PSI = 0.7
DEGRADED_SAMPLE = 2    # the sample whose grey/blurred/low-res versions are written
SCRIBBLES = ("cat_orange", "cat_grey", "face_brown", "face_blond", "grumpy")
SCRIBBLE_SIZES = (64, 256)


# ------------------------------------------------------------------------------------------ lookup

def _rel(*names: str) -> Path:
    return EXAMPLES_DIR.joinpath(*names)


def _sample(model: str, seed: int, suffix: str = "") -> Path:
    return SAMPLES_DIR / f"{model}_{seed:02d}{suffix}.png"


def _rows(tab: str) -> list[list[Path]]:
    face, cat = "face64", "cat64"
    d = DEGRADED_SAMPLE
    if tab == "scribble":
        return [[_rel(f"scribble_{name}_256.png")] for name in SCRIBBLES]
    if tab == "inpaint":
        return [[_rel("astronaut_face.png"), _rel("astronaut_face_mask.png")],
                [_rel("chelsea_face.png"), _rel("chelsea_face_mask.png")],
                [_sample(face, 0), _rel("mask64_face_eyes.png")],
                [_sample(cat, 0), _rel("mask64_cat_eyes.png")],
                [_sample("grumpycat64", 0), _rel("mask64_cat_eyes.png")]]
    if tab == "reconstruct":
        return [[_rel("astronaut_face.png")], [_rel("chelsea_face.png")], [_sample(face, 1)], [_sample(cat, 1)],
                [_rel("astronaut.png")]]
    if tab in ("colorize", "deblur", "superres"):
        suffix = {"colorize": "_gray", "deblur": "_blur", "superres": "_lowres"}[tab]
        return [[_rel(f"astronaut_face{suffix}.png")], [_rel(f"chelsea_face{suffix}.png")],
                [_sample(face, d, suffix)], [_sample(cat, d, suffix)]]
    if tab == "interpolate":
        return [[_rel("astronaut_face.png"), _sample(face, 3)], [_sample(face, 3), _sample(face, 4)],
                [_rel("chelsea_face.png"), _sample(cat, 3)], [_sample(cat, 3), _sample(cat, 4)]]
    raise ValueError(f"unknown tab {tab!r}; expected one of {TABS}")


def examples_for(tab: str) -> list[list[str]]:
    """Example rows (lists of file paths, one per input component) for `tab`; rows with a missing file are dropped."""
    return [[str(p) for p in row] for row in _rows(tab) if all(p.is_file() for p in row)]


def model_for_example(path: str | Path) -> str | None:
    """The bundled model an example file suits ('face64', 'cat64', a sample's model), or None."""
    p = Path(path)
    name = p.name
    if p.parent.name == SAMPLES_DIR.name:
        return name.split("_", 1)[0]
    for prefix, model in (("astronaut", "face64"), ("chelsea", "cat64"), ("scribble_face", "face64"),
                          ("scribble_cat", "cat64"), ("scribble_grumpy", "grumpycat64"), ("mask64_face", "face64"), ("mask64_cat", "cat64")):
        if name.startswith(prefix):
            return model
    return None


# ------------------------------------------------------------------------------------------- write

def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(img)).save(path, optimize=True)
    print(f"  {path.relative_to(ROOT)}  {img.shape[1]}x{img.shape[0]}", file=sys.stderr)


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def copy_photos() -> None:
    """Copy missing photos from scikit-image's bundled data (long side <= 512), if scikit-image is installed."""
    missing = [name for name in PHOTOS if not _rel(f"{name}.png").is_file()]
    if not missing:
        return
    try:
        from skimage import data  # noqa: PLC0415 - optional, only to fetch the photos once
    except ImportError:
        print(f"  missing {missing} and scikit-image is not installed: `pip install scikit-image` once "
              "to copy them", file=sys.stderr)
        return
    for name in missing:
        im = Image.fromarray(getattr(data, name)())
        if max(im.size) > 512:
            s = 512 / max(im.size)
            im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        _save(_rel(f"{name}.png"), np.asarray(im.convert("RGB")))


def _square_crop(rgb: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop `box` (may reach outside the image: mirror-padded) and resize it to `size` x `size`."""
    left, top, right, bottom = box
    h, w = rgb.shape[:2]
    pad = max(0, -left, -top, right - w, bottom - h)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    crop = rgb[top + pad:bottom + pad, left + pad:right + pad]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def face_crops() -> dict[str, np.ndarray]:
    """The 256 px crops of the photos that exist."""
    crops = {}
    if _rel("astronaut.png").is_file():
        rgb = _load_rgb(_rel("astronaut.png"))
        from app.face_align import align_face  # noqa: PLC0415 - dlib loads only when making examples
        r = align_face(rgb, size=CROP_SIZE)
        if not r.found:
            print(f"  astronaut: {r.notice}; using a fixed crop", file=sys.stderr)
        crops["astronaut_face"] = r.aligned if r.found else _square_crop(rgb, ASTRONAUT_FALLBACK_BOX, CROP_SIZE)
    if _rel("chelsea.png").is_file():
        crops["chelsea_face"] = _square_crop(_load_rgb(_rel("chelsea.png")), CHELSEA_BOX, CROP_SIZE)
    return crops


def gray(rgb: np.ndarray) -> np.ndarray:
    """Greyscale (ITU-R 601 luma, as PIL's 'L'), kept as 3 equal channels."""
    y = np.asarray(Image.fromarray(rgb).convert("L"))
    return np.repeat(y[..., None], 3, axis=2)


def blur(rgb: np.ndarray) -> np.ndarray:
    """Gaussian blur equivalent to the engine's default (sigma 2 px at 64 px) at this image's size."""
    sigma = BLUR_SIGMA_64 * rgb.shape[1] / 64
    k = 2 * int(round(2 * sigma)) + 1  # the engine's kernel 9 at sigma 2
    return cv2.GaussianBlur(rgb, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def lowres(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (LOWRES, LOWRES), interpolation=cv2.INTER_AREA)


def write_degraded(stem: Path, rgb: np.ndarray) -> None:
    """``STEM_gray.png``, ``STEM_blur.png`` and ``STEM_lowres.png`` next to `stem`."""
    _save(stem.with_name(stem.name + "_gray.png"), gray(rgb))
    _save(stem.with_name(stem.name + "_blur.png"), blur(rgb))
    _save(stem.with_name(stem.name + "_lowres.png"), lowres(rgb))


def _mask(size: int, draw) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    draw(m, size)
    return m


def face_mask(size: int) -> np.ndarray:
    """Both eyes and brows of a face in face64's framing (template eyes at y ~ 0.30)."""
    def draw(m, s):
        cv2.ellipse(m, (round(0.49 * s), round(0.28 * s)), (round(0.36 * s), round(0.11 * s)), 0, 0, 360, 255, -1)
    return _mask(size, draw)


def cat_mask(size: int) -> np.ndarray:
    """The nose and mouth of chelsea_face.png."""
    def draw(m, s):
        cv2.ellipse(m, (round(0.54 * s), round(0.83 * s)), (round(0.16 * s), round(0.11 * s)), 0, 0, 360, 255, -1)
    return _mask(size, draw)


def eyes_mask64(model: str) -> np.ndarray:
    """A box over the eye band of a 64 px sample: face64 eyes sit at y ~ 0.30 (the face template), AFHQ
    cats' at y ~ 0.5."""
    m = np.zeros((64, 64), np.uint8)
    rows = slice(12, 27) if model == "face64" else slice(24, 40)
    m[rows, 10:54] = 255
    return m


# --------------------------------------------------------------------------------------- scribbles

def _pts(coords, s: int) -> np.ndarray:
    return np.array([[round(x * s), round(y * s)] for x, y in coords], np.int32)


def scribble(name: str, size: int) -> np.ndarray:
    """A few thick colour strokes on white, drawn natively at `size` (anti-aliased only at >= 128 px)."""
    img = np.full((size, size, 3), 255, np.uint8)
    aa = cv2.LINE_AA if size >= 128 else cv2.LINE_8

    def stroke(coords, colour, width):
        cv2.polylines(img, [_pts(coords, size)], False, colour, max(1, round(width * size)), aa)

    def dot(xy, colour, radius):
        cv2.circle(img, (round(xy[0] * size), round(xy[1] * size)), max(1, round(radius * size)), colour, -1, aa)

    if name.startswith("cat"):
        fur, dark, eye = {"cat_orange": ((235, 140, 40), (150, 80, 20), (90, 170, 60)),
                          "cat_grey": ((120, 125, 135), (60, 60, 70), (220, 190, 40))}[name]
        stroke([(0.12, 0.40), (0.15, 0.05), (0.35, 0.25)], fur, 0.07)        # left ear
        stroke([(0.65, 0.25), (0.85, 0.05), (0.88, 0.40)], fur, 0.07)        # right ear
        stroke([(0.15, 0.45), (0.5, 0.28), (0.85, 0.45)], fur, 0.09)         # forehead
        stroke([(0.12, 0.55), (0.18, 0.85), (0.5, 0.95), (0.82, 0.85), (0.88, 0.55)], fur, 0.09)  # cheeks
        stroke([(0.42, 0.22), (0.45, 0.36)], dark, 0.04)                     # forehead stripes
        stroke([(0.58, 0.22), (0.55, 0.36)], dark, 0.04)
        dot((0.33, 0.47), eye, 0.065)
        dot((0.67, 0.47), eye, 0.065)
        dot((0.5, 0.66), (225, 130, 140), 0.04)                              # nose
    elif name == "grumpy":
        # Grumpy Cat's marks, not just a cat's outline: dark patches around the blue eyes, a white blaze between them,
        # a white muzzle and a frown. The earlier drawing (dark dashes beside bare eyes) left the eye band free, and
        # over seeds 0-17 grumpycat64 drew a plain grey cat (its data's Russian Blues) at 7; this one, none.
        cream, dark, patch, white = (205, 180, 150), (90, 65, 50), (70, 50, 40), (240, 236, 228)
        stroke([(0.12, 0.40), (0.15, 0.05), (0.35, 0.25)], dark, 0.07)       # ears
        stroke([(0.65, 0.25), (0.85, 0.05), (0.88, 0.40)], dark, 0.07)
        stroke([(0.3, 0.22), (0.5, 0.17), (0.7, 0.22)], cream, 0.07)         # forehead
        stroke([(0.16, 0.50), (0.26, 0.38), (0.42, 0.44), (0.38, 0.56), (0.22, 0.58)], patch, 0.09)  # eye patches
        stroke([(0.84, 0.50), (0.74, 0.38), (0.58, 0.44), (0.62, 0.56), (0.78, 0.58)], patch, 0.09)
        stroke([(0.5, 0.36), (0.5, 0.58)], white, 0.07)                      # blaze
        stroke([(0.28, 0.80), (0.5, 0.90), (0.72, 0.80)], white, 0.10)       # muzzle
        stroke([(0.38, 0.80), (0.5, 0.75), (0.62, 0.80)], (150, 110, 110), 0.025)  # frown
        dot((0.31, 0.47), (120, 170, 205), 0.05)                             # blue eyes
        dot((0.69, 0.47), (120, 170, 205), 0.05)
        dot((0.5, 0.66), (215, 140, 145), 0.035)                             # nose
    elif name.startswith("face"):
        skin, hair, eye = {"face_brown": ((205, 150, 120), (60, 40, 25), (60, 40, 30)),
                           "face_blond": ((240, 200, 175), (225, 190, 90), (70, 110, 170))}[name]
        stroke([(0.06, 0.55), (0.08, 0.1), (0.5, 0.0), (0.92, 0.1), (0.94, 0.55)], hair, 0.12)  # hair
        stroke([(0.2, 0.45), (0.22, 0.75), (0.5, 0.93), (0.78, 0.75), (0.8, 0.45)], skin, 0.12)  # cheeks, jaw
        stroke([(0.25, 0.18), (0.75, 0.18)], skin, 0.08)                     # forehead
        stroke([(0.5, 0.35), (0.5, 0.55)], skin, 0.08)                       # nose
        dot((0.30, 0.31), eye, 0.04)
        dot((0.69, 0.31), eye, 0.04)
        stroke([(0.38, 0.72), (0.5, 0.74), (0.62, 0.72)], (190, 80, 80), 0.04)  # mouth
    else:
        raise ValueError(f"unknown scribble {name!r}; expected one of {SCRIBBLES}")
    return img


# ----------------------------------------------------------------------------------------- samples

def model_samples(name: str) -> list[np.ndarray]:
    """8 samples (seeds 0..7, truncation 0.7) of a bundled model, as uint8 RGB."""
    import torch  # noqa: PLC0415

    import models  # noqa: PLC0415
    from engine.inversion import to_uint8  # noqa: PLC0415

    G = models.load_model(name, with_discriminator=False).G
    out = []
    with torch.no_grad():
        for seed in SAMPLE_SEEDS:
            z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
            try:
                x = G(z, truncation_psi=SAMPLE_PSI)
            except TypeError:  # a generator without truncation
                x = G(z)
            out.append(to_uint8(x))
    return out


class NotBundledError(ValueError):
    """A model name given for the samples is not a bundled model."""


def _bundled(names: Sequence[str] | None) -> list[str]:
    """The named bundled models (all of them when None); NotBundledError naming any that is not bundled."""
    import models  # noqa: PLC0415

    bundled = models.bundled_names()
    unknown = sorted(set(names or ()) - set(bundled))
    if unknown:
        raise NotBundledError(f"not bundled: {', '.join(unknown)}; bundled models are {', '.join(bundled)}")
    return bundled if names is None else sorted(set(names))


def write_samples(names: Sequence[str] | None = None) -> None:
    """Samples (and sample 02's degraded versions) of the named bundled models, all of them when None;
    a name that is not bundled is refused before anything is written."""
    for name in _bundled(names):
        try:
            images = model_samples(name)
        except Exception as exc:  # a model being rewritten by training, a broken file: keep the old samples
            print(f"  {name}: could not sample ({type(exc).__name__}: {exc}); kept the previous samples",
                  file=sys.stderr)
            continue
        for seed, img in zip(SAMPLE_SEEDS, images):
            _save(_sample(name, seed), img)
        write_degraded(_sample(name, DEGRADED_SAMPLE).with_suffix(""), images[DEGRADED_SAMPLE])


def make(*, samples: bool = True, models: Sequence[str] | None = None) -> None:
    """Rewrite every derived example; `models` limits the model samples to those bundled models (the
    other files do not depend on a model's weights). An unknown name is refused before anything is written."""
    names = _bundled(models) if samples else None
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    copy_photos()
    for stem, rgb in face_crops().items():
        _save(_rel(f"{stem}.png"), rgb)
        write_degraded(_rel(stem), rgb)
        _save(_rel(f"{stem}_mask.png"), face_mask(CROP_SIZE) if stem.startswith("astronaut") else cat_mask(CROP_SIZE))
    _save(_rel("mask64_face_eyes.png"), eyes_mask64("face64"))
    _save(_rel("mask64_cat_eyes.png"), eyes_mask64("cat64"))
    for name in SCRIBBLES:
        for size in SCRIBBLE_SIZES:
            _save(_rel(f"scribble_{name}_{size}.png"), scribble(name, size))
    if samples:
        write_samples(names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.examples", description="Example inputs for the app's tabs.")
    ap.add_argument("--make", action="store_true", help="(re)write the derived examples under assets/examples/")
    ap.add_argument("--skip-samples", action="store_true", help="with --make: leave the model samples alone")
    ap.add_argument("--models", nargs="+", metavar="NAME",
                    help="with --make: refresh only these bundled models' samples (default: all)")
    args = ap.parse_args(argv)
    if args.models and not args.make:
        ap.error("--models needs --make")
    if args.models and args.skip_samples:
        ap.error("--models and --skip-samples contradict each other")
    if args.make:
        try:
            make(samples=not args.skip_samples, models=args.models)
        except NotBundledError as exc:  # make checks the names before writing anything
            ap.error(str(exc))
    for tab in TABS:
        rows = examples_for(tab)
        print(f"{tab}: {len(rows)} example rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
