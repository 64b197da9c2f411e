"""Pack an image folder small enough to carry to a device machine: every image centre-cropped and resized to R px
(`models.dataset.load_square`, RGB) into one gzipped tar under its own file name, so `is_held_out` splits the
unpacked folder exactly as it splits the original. JPEG sources stay JPEG (quality 95, no chroma subsampling);
any other format is stored as lossless PNG bytes.

    python -m models.pack_dataset ../shared/data/faces-utk-128 --resolution 64 --out device_data/faces64.tgz
"""
from __future__ import annotations

import argparse
import io
import logging
import tarfile
from pathlib import Path

from PIL import Image

from .dataset import list_images, load_square

log = logging.getLogger(__name__)
JPEG_SUFFIXES = (".jpg", ".jpeg")


def encode_square(path: Path, *, resolution: int, quality: int = 95) -> bytes:
    """One image at `resolution` px, encoded in the family its suffix names (JPEG or lossless PNG)."""
    im = Image.fromarray(load_square(path, resolution))
    buf = io.BytesIO()
    if path.suffix.lower() in JPEG_SUFFIXES:
        # 4:4:4 because at 64 px 4:2:0 halves colour detail to 32 px: eyes and lips bleed.
        im.save(buf, format="JPEG", quality=quality, subsampling=0)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


def pack_folder(src: str | Path, out: str | Path, *, resolution: int, quality: int = 95) -> int:
    """Write `out` (.tgz) with every image of `src` at `resolution` px at the archive's top level -> image count."""
    files = list_images(src)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for path in files:
            data = encode_square(path, resolution=resolution, quality=quality)
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    log.info("packed %d images at %d px into %s (%.1f MB)", len(files), resolution, out, out.stat().st_size / 1e6)
    return len(files)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="image folder (the trainer's --data)")
    p.add_argument("--resolution", type=int, default=64, help="side in px (the model's resolution)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality for JPEG sources")
    p.add_argument("--out", required=True, help="the .tgz to write; unpack it and pass the folder as --data")
    a = p.parse_args(argv)
    n = pack_folder(a.src, a.out, resolution=a.resolution, quality=a.quality)
    print(f"{a.out}: {n} images at {a.resolution} px, {Path(a.out).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
