"""Catalogue of well-known official StyleGAN2-ADA checkpoints and their download into a local cache.

`fetch(entry)` returns the cached file, downloading it (with a progress bar) when it is missing and the
network is reachable; offline it fails fast, saying where to put the file. Hashes: a published sha256 (or,
for torchvision files, the sha256 prefix torchvision puts in the file name and checks) is checked before the
download is put in place; where none is recorded here (we could not fetch the files to compute it), the
first download's hash is stored beside the file and every later use is checked against it (trust on first use).
`VGG16` is torchvision's ImageNet VGG16 (the perceptual network official models expect), same cache.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .strict_load import CheckpointError

log = logging.getLogger(__name__)
_NVIDIA_NC = "NVIDIA Source Code License-NC (non-commercial research/evaluation only)"
_BASE = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    url: str
    filename: str
    resolution: int
    domain: str
    licence: str
    sha256: str | None = None
    sha256_prefix: str | None = None  # torchvision/torch.hub style: the file name carries the hash's start


CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in [
    CatalogueEntry("ffhq", _BASE + "ffhq.pkl", "ffhq.pkl", 1024, "human faces (FFHQ)",
                   _NVIDIA_NC + "; FFHQ images CC BY-NC-SA 4.0"),
    CatalogueEntry("afhqcat", _BASE + "afhqcat.pkl", "afhqcat.pkl", 512, "cat faces (AFHQ cat)",
                   _NVIDIA_NC + "; AFHQ CC BY-NC 4.0"),
    CatalogueEntry("afhqdog", _BASE + "afhqdog.pkl", "afhqdog.pkl", 512, "dog faces (AFHQ dog)",
                   _NVIDIA_NC + "; AFHQ CC BY-NC 4.0"),
    CatalogueEntry("afhqwild", _BASE + "afhqwild.pkl", "afhqwild.pkl", 512, "wild animal faces (AFHQ wild)",
                   _NVIDIA_NC + "; AFHQ CC BY-NC 4.0"),
    CatalogueEntry("metfaces", _BASE + "metfaces.pkl", "metfaces.pkl", 1024, "faces in art (MetFaces)",
                   _NVIDIA_NC + "; MetFaces CC BY-NC 2.0"),
    CatalogueEntry("brecahad", _BASE + "brecahad.pkl", "brecahad.pkl", 512, "histology (BreCaHAD)",
                   _NVIDIA_NC + "; BreCaHAD CC BY 4.0"),
]}


# torchvision/models/vgg.py `VGG16_Weights.IMAGENET1K_V1`; torch.hub checks the file against the name's prefix.
VGG16 = CatalogueEntry("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth", "vgg16-397923af.pth",
                       224, "ImageNet classification (perceptual features)",
                       "torchvision's published ImageNet weights (see torchvision's model documentation)",
                       sha256_prefix="397923af")


def cache_dir() -> Path:
    """`$LATENTBRUSH_CACHE`, else `~/.cache/latentbrush`."""
    return Path(os.environ.get("LATENTBRUSH_CACHE", Path.home() / ".cache" / "latentbrush"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_published(entry: CatalogueEntry, path: Path, digest: str) -> None:
    if entry.sha256 is not None and digest != entry.sha256:
        raise CheckpointError(f"{path}: sha256 {digest} does not match the published {entry.sha256}")
    if entry.sha256_prefix is not None and not digest.startswith(entry.sha256_prefix):
        raise CheckpointError(f"{path}: sha256 {digest} does not start with the published "
                              f"{entry.sha256_prefix}")


def _verify(entry: CatalogueEntry, path: Path) -> None:
    digest = sha256_of(path)
    if entry.sha256_prefix is not None:
        try:
            _check_published(entry, path, digest)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; delete the file and download it again") from None
        return
    recorded = path.with_suffix(path.suffix + ".sha256")
    expected = entry.sha256 or (recorded.read_text().strip() if recorded.is_file() else None)
    if expected is None:
        recorded.write_text(digest + "\n")
        log.warning("%s: no published sha256 recorded; stored %s for later checks", entry.name, digest)
    elif digest != expected:
        raise CheckpointError(f"{path}: sha256 {digest} does not match the expected {expected}; "
                              "delete the file and download it again")


def fetch(entry: CatalogueEntry, *, timeout: float = 15.0) -> Path:
    """Path of the cached checkpoint, downloading it when missing. Raises CheckpointError offline."""
    target = cache_dir() / entry.filename
    if target.is_file():
        _verify(entry, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        from tqdm import tqdm
        with urllib.request.urlopen(entry.url, timeout=timeout) as resp, open(tmp, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=entry.filename) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and f.tell() != total:  # http.client reports a dropped connection as EOF
                raise OSError(f"download incomplete: {f.tell()} of {total} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not download '{entry.name}' from {entry.url} ({exc}). Offline? "
                              f"Download it elsewhere and put it at {target}") from exc
    try:  # a corrupt or substituted download never takes the cached file's place
        _check_published(entry, tmp, sha256_of(tmp))
    except CheckpointError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    _verify(entry, target)
    return target
