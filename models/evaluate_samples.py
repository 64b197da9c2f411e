"""Sample quality of a generator against held-out real images: FID and KID per feature extractor.

CLI: `python -m models.evaluate_samples MODEL [--real DIR] [--names LIST] [--fake 1000] [--features ...]
[--feature-cache DIR] [--record]`. MODEL is a bundled name or a checkpoint path; the real images default to
`../shared/data/<domain>` filtered by `assets/models/<name>.heldout.txt`. `--feature-cache` keeps the real
images' features between runs (comparing snapshots against a whole training folder, where extracting them
costs more than the samples). `--record` writes the figures into the model's JSON under
`metrics.sample_quality`. Lower is better for both statistics.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .catalogue import sha256_of
from .dataset import list_images, load_square
from .loader import load_model, models_dir
from .pixels import to_uint8
from .sample_quality import EXTRACTORS, FeatureFn, frechet_distance, kernel_inception_distance

log = logging.getLogger("models.evaluate_samples")
REPO = Path(__file__).resolve().parent.parent


@torch.inference_mode()
def generate_uint8(G: torch.nn.Module, n: int, *, seed: int = 0, batch: int = 50,
                   noise_mode: str = "random") -> np.ndarray:
    """n samples of G(z) (psi 1, fixed seed; `noise_mode` "const" draws as the README's grids do) -> `[n, R, R, 3]`
    uint8 RGB."""
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    out = []
    # The noise inputs draw from the global RNG: seed a forked one so results repeat without side effects.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, n, batch):
            z = torch.randn(min(batch, n - i), G.z_dim, generator=gen).to(device)
            out.append(to_uint8(G(z, noise_mode=noise_mode)).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def real_files(folder: str | Path, *, names: Sequence[str] | None = None) -> list[Path]:
    """The folder's images, optionally only the listed file names; raises if none are left."""
    files = list_images(folder)
    if names is not None:
        wanted = set(names)
        files = [p for p in files if p.name in wanted]
    if not files:
        raise ValueError(f"no listed images found in {folder}")
    return files


def load_real(folder: str | Path, resolution: int, *, names: Sequence[str] | None = None) -> np.ndarray:
    """Real images (optionally only the listed file names) -> `[N, R, R, 3]` uint8 RGB."""
    return np.stack([load_square(p, resolution) for p in real_files(folder, names=names)])


def real_features(files: Sequence[Path], resolution: int, extractors: dict[str, FeatureFn], *,
                  cache: str | Path | None = None) -> dict[str, np.ndarray]:
    """{extractor: `[N, D]` features} of the files at `resolution`.

    With `cache`, each extractor's features are kept in `cache/<extractor>-<key>.npy`, the key hashing the
    resolution and every file's name and bytes, so a changed file set is extracted again. Contents, not
    modification times: a copied or re-synced data folder has new times and the same photos."""
    paths: dict[str, Path] = {}
    if cache is not None:
        digest = hashlib.sha1(str(resolution).encode())
        for p in files:
            digest.update(f"{p.name}:{sha256_of(p)}".encode())
        paths = {name: Path(cache) / f"{name}-{digest.hexdigest()[:16]}.npy" for name in extractors}
    out = {name: np.load(paths[name]) for name in extractors if name in paths and paths[name].is_file()}
    missing = [name for name in extractors if name not in out]
    if missing:
        images = np.stack([load_square(p, resolution) for p in files])
        for name in missing:
            out[name] = extractors[name](images)
            if name in paths:
                paths[name].parent.mkdir(parents=True, exist_ok=True)
                np.save(paths[name], out[name])
    return out


def scores(fr: np.ndarray, ff: np.ndarray) -> dict[str, float]:
    """{fid, kid, kid_std} for real and fake feature sets (KID subsets of at most 100)."""
    kid, kid_std = kernel_inception_distance(fr, ff, subset_size=min(100, len(fr), len(ff)))
    return {"fid": frechet_distance(fr, ff), "kid": kid, "kid_std": kid_std}


def default_real(config_name: str, domain: str) -> tuple[Path, list[str] | None]:
    folder = REPO.parent / "shared" / "data" / domain
    listing = models_dir() / f"{config_name}.heldout.txt"
    names = listing.read_text().split() if listing.is_file() else None
    return folder, names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.evaluate_samples", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--real", help="folder of real images (default ../shared/data/<domain>)")
    p.add_argument("--names", help="file listing which real files to use (default the model's heldout.txt)")
    p.add_argument("--fake", type=int, default=1000, help="generated samples")
    p.add_argument("--features", nargs="+", choices=sorted(EXTRACTORS), help="default: mobilenet, plus "
                   "dlib-face for face models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--feature-cache", metavar="DIR", help="keep the real images' features here between runs")
    p.add_argument("--record", action="store_true", help="write the figures into the bundled model's JSON")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_model(a.model, with_discriminator=False)
    cfg = loaded.config
    folder, names = default_real(cfg.name, cfg.domain)
    if a.real:
        folder, names = Path(a.real), None
    if a.names:
        names = Path(a.names).read_text().split()
    feats = a.features or (["mobilenet", "dlib-face"] if "face" in cfg.domain else ["mobilenet"])
    t0 = time.time()
    files = real_files(folder, names=names)
    extractors = {f: EXTRACTORS[f]() for f in feats}
    real = real_features(files, cfg.resolution, extractors, cache=a.feature_cache)
    fake = generate_uint8(loaded.G, a.fake, seed=a.seed)
    result = {f: scores(real[f], fn(fake)) for f, fn in extractors.items()}
    record = {"real": f"{folder.name} ({len(files)} images{', held out' if names else ''})", "fake": a.fake,
              "images_seen": cfg.images_seen, "command": "python -m models.evaluate_samples " + cfg.name,
              **result}
    for f, r in result.items():
        print(f"{cfg.name} [{f}] FID {r['fid']:.2f}  KID {r['kid'] * 1000:.2f} +- {r['kid_std'] * 1000:.2f} x1e-3"
              f"  ({len(files)} real, {a.fake} fake, {cfg.images_seen} images seen)")
    log.info("%.1f s", time.time() - t0)
    if a.record:
        path = models_dir() / f"{cfg.name}.json"
        data = json.loads(path.read_text())
        data.setdefault("metrics", {})["sample_quality"] = record
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
