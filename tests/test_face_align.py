"""Automatic face alignment (`app.face_align`) on a real photo shipped in assets/examples/.

astronaut.png is NASA's portrait of Eileen Collins (public domain), copied from scikit-image's bundled data.
"""
from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app import face_align
from app.face_align import NO_FACE_NOTICE, TEMPLATE_PATH, align_face, load_template

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "assets" / "examples" / "astronaut.png"
UTK = ROOT.parent / "shared" / "data" / "faces-utk-128"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def aligned_astronaut(astronaut) -> face_align.AlignResult:
    return align_face(astronaut, size=256)


def _similarity(img: np.ndarray, angle: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    return cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), M


def test_template_json_has_68_normalised_points():
    data = json.loads(TEMPLATE_PATH.read_text(encoding="utf-8"))
    pts = np.asarray(data["landmarks68"], dtype=float)
    assert pts.shape == (68, 2)
    assert np.isfinite(pts).all() and pts.min() >= 0.0 and pts.max() <= 1.0
    assert data["images_used"] >= 100 and data["crop"] and data["source"]
    # a face, not noise: left eye (36-41) left of right eye (42-47), both above the nose tip (30) and the mouth
    left_eye, right_eye = pts[36:42].mean(0), pts[42:48].mean(0)
    assert left_eye[0] < pts[30, 0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < pts[30, 1] < pts[48:68, 1].mean()
    np.testing.assert_allclose(load_template(), pts)


def test_astronaut_face_is_found_and_aligned(astronaut, aligned_astronaut):
    r = aligned_astronaut
    assert r.found, r.notice
    assert r.aligned.shape == (256, 256, 3) and r.aligned.dtype == np.uint8
    assert r.landmarks.shape == (68, 2)
    h, w = astronaut.shape[:2]
    assert (r.landmarks >= 0).all() and (r.landmarks[:, 0] < w).all() and (r.landmarks[:, 1] < h).all()
    left, top, right, bottom = r.box
    assert 0 <= left < right < w and 0 <= top < bottom < h
    # Eileen Collins' face is in the upper middle of the portrait
    cx, cy = r.landmarks.mean(0)
    assert 150 < cx < 300 and 60 < cy < 200
    assert r.notice == ""
    # the landmarks land on the template after the warp
    M = face_align.similarity_to_template(r.landmarks, load_template(), 256)
    mapped = np.c_[r.landmarks, np.ones(68)] @ M.T
    assert np.median(np.linalg.norm(mapped - (load_template() * 256 - 0.5), axis=1)) < 256 * 0.03


def test_output_size_follows_the_argument(astronaut):
    r = align_face(astronaut, size=64)
    assert r.found and r.aligned.shape == (64, 64, 3) and r.aligned.dtype == np.uint8


def test_rotated_and_scaled_photo_aligns_like_the_original(astronaut, aligned_astronaut):
    rotated, M = _similarity(astronaut, 20, 0.8)
    r = align_face(rotated, size=256)
    assert r.found, r.notice
    # landmarks follow the transform
    expected = np.c_[aligned_astronaut.landmarks, np.ones(68)] @ M.T
    assert np.median(np.linalg.norm(r.landmarks - expected, axis=1)) < 4.0
    # and the aligned crops agree far better than an unrelated crop of the same photo does
    ref = aligned_astronaut.aligned.astype(np.float64)
    diff = np.abs(r.aligned.astype(np.float64) - ref).mean()
    rng = np.random.default_rng(0)
    baselines = []
    for _ in range(8):
        y, x = rng.integers(0, 256, size=2)
        crop = cv2.resize(astronaut[y:y + 256, x:x + 256], (256, 256))
        baselines.append(np.abs(crop.astype(np.float64) - ref).mean())
    assert diff < 12 and diff < 0.25 * min(baselines), (diff, baselines)


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_gives_a_notice(kind):
    if kind == "blank":
        img = np.full((240, 320, 3), 255, np.uint8)
    else:
        img = np.random.default_rng(1).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    r = align_face(img)
    assert not r.found and r.aligned is None and r.landmarks is None and r.box is None
    assert r.notice == NO_FACE_NOTICE


def test_missing_dlib_gives_a_notice_not_a_crash(monkeypatch, astronaut):
    monkeypatch.setattr(face_align, "_backend", None)
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    r = align_face(astronaut)
    assert not r.found and r.aligned is None
    assert "unavailable" in r.notice and "dlib" in r.notice and "manual crop" in r.notice
    assert face_align.availability()[0] is False


def test_missing_model_files_give_a_notice(monkeypatch, astronaut, tmp_path):
    monkeypatch.setattr(face_align, "_backend", None)
    monkeypatch.setattr(face_align, "_predictor_path", lambda: tmp_path / "nowhere.dat")
    r = align_face(astronaut)
    assert not r.found and "unavailable" in r.notice and face_align.PREDICTOR_FILE in r.notice


def test_missing_template_gives_a_notice(astronaut, tmp_path):
    r = align_face(astronaut, template_path=tmp_path / "missing.json")
    assert not r.found and "template" in r.notice
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"landmarks68": [[0.5, 0.5]] * 5}))
    r = align_face(astronaut, template_path=bad)
    assert not r.found and "template" in r.notice


def test_contract_violations_raise(astronaut):
    with pytest.raises(ValueError):
        align_face(astronaut.astype(np.float32))
    with pytest.raises(ValueError):
        align_face(astronaut[..., 0])
    with pytest.raises(ValueError):
        align_face(astronaut, size=0)


def test_concurrent_calls_agree(astronaut, aligned_astronaut):
    results: list[np.ndarray | None] = [None] * 4

    def work(i: int) -> None:
        results[i] = align_face(astronaut, size=256).aligned

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for img in results:
        np.testing.assert_array_equal(img, aligned_astronaut.aligned)


@pytest.mark.skipif(not UTK.is_dir(), reason="training data (../shared/data/faces-utk-128) not present")
def test_training_crops_map_to_themselves():
    """Aligning face64's own training crops is close to the identity: the template is their framing."""
    template = load_template()
    files = sorted(UTK.glob("*.jpg"))[11::400]
    params = []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        found = face_align.detect_landmarks(rgb)
        if found is None:
            continue
        M = face_align.similarity_to_template(found[0], template, rgb.shape[1])
        centre = M @ np.array([63.5, 63.5, 1.0])
        params.append((math.sqrt(np.linalg.det(M[:, :2])), math.degrees(math.atan2(M[1, 0], M[0, 0])),
                       *(centre - 63.5)))
    p = np.asarray(params)
    assert len(p) >= 20
    mean = p.mean(axis=0)
    assert abs(mean[0] - 1) < 0.05 and abs(mean[1]) < 2.0 and np.abs(mean[2:]).max() < 2.0, mean
