"""Sample-quality statistics: FID and KID between two feature sets, and the feature extractors they use.

Features are `[N, D]` float64 arrays. Images given to extractors are `[N, H, W, 3]` uint8 RGB.
Extractors: `mobilenet` (ImageNet MobileNetV2 global-pooled features, shipped under assets/models) and
`dlib-face` (dlib's 128-d face descriptors from `face-recognition-models`; faces only).
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

FeatureFn = Callable[[np.ndarray], np.ndarray]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between Gaussians fitted to two feature sets (rows are samples)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrt(C1 C2)) = sum sqrt(eig(sqrt(C1) C2 sqrt(C1))): symmetric, so eigh is stable where sqrtm is not.
    w1, v1 = np.linalg.eigh(c1)
    s1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ c2 @ s1), 0, None)).sum()
    return float(np.square(mu1 - mu2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, *, subsets: int = 50, subset_size: int = 100,
                              seed: int = 0) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic polynomial kernel, as in Binkowski et al.): (mean, std over subsets)."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two samples in each set")
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def mobilenet_features(*, device: str = "cpu", size: int = 224) -> FeatureFn:
    """1280-d average-pooled head output of the shipped MobileNetV2, images resized to its 224 px input."""
    import torch  # noqa: PLC0415 - torch only when this extractor is used
    import torch.nn.functional as F  # noqa: PLC0415

    from .mobilenet import load_mobilenet  # noqa: PLC0415

    net, meta = load_mobilenet(device=device)
    zero, scale = float(meta["input"]["zero_point"]), float(meta["input"]["scale"])

    @torch.inference_mode()
    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), 32):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + 32])).permute(0, 3, 1, 2).float().to(device)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            h = net.head(net.block_outputs((x - zero) * scale)[-1])
            out.append(h.mean(dim=[2, 3]).double().cpu().numpy())
        return np.concatenate(out)

    return features


def _face_models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise RuntimeError("dlib face descriptors need the face-recognition-models package")
    return Path(spec.origin).resolve().parent / "models"


def dlib_face_features(*, upsample: int = 150) -> FeatureFn:
    """dlib's 128-d face descriptor of each (already aligned, tightly cropped) face image.

    The images are aligned crops, so the whole frame is taken as the face box and dlib's 5-point predictor
    places the landmarks inside it; no detector runs (it misses most 64 px faces).
    """
    import cv2  # noqa: PLC0415
    import dlib  # noqa: PLC0415

    models = _face_models_dir()
    sp = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for img in images:
            big = cv2.resize(img, (upsample, upsample), interpolation=cv2.INTER_CUBIC)
            big = np.ascontiguousarray(big)
            shape = sp(big, dlib.rectangle(0, 0, upsample - 1, upsample - 1))
            out.append(np.asarray(rec.compute_face_descriptor(big, shape), dtype=np.float64))
        return np.stack(out)

    return features


EXTRACTORS: dict[str, Callable[..., FeatureFn]] = {"mobilenet": mobilenet_features, "dlib-face": dlib_face_features}
