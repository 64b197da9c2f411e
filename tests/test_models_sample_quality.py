"""Sample-quality metric (FID/KID), its feature extractors, the CLI, resume from a shipped model and the
trainer's metric log — on tiny data."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import models
from models.evaluate_samples import generate_uint8, load_real, real_features, scores
from models.sample_quality import dlib_face_features, frechet_distance, kernel_inception_distance
from models.train import export, main
from tests.tiny import tiny_trainer


def test_fid_is_zero_for_the_same_set_and_the_closed_form_for_shifted_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2*2I) = |m|^2 + d
    b = rng.standard_normal((4000, 8)) * 2 + 3
    assert frechet_distance(a, b) == pytest.approx(9 * 8 + 8, rel=0.05)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 16)), rng.standard_normal((300, 16))
    same, _ = kernel_inception_distance(a, b, subsets=20)
    far, _ = kernel_inception_distance(a, b + 1.0, subsets=20)
    assert abs(same) < 0.05 < far


def test_dlib_face_descriptors_are_128d_and_tell_faces_from_noise():
    face = np.asarray(Image.open("assets/examples/astronaut_face.png").convert("RGB").resize((64, 64)))
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    f = dlib_face_features()(np.stack([face, face[:, ::-1].copy(), noise]))
    assert f.shape == (3, 128)
    # a mirrored face stays much nearer its original than noise does
    assert np.linalg.norm(f[0] - f[1]) < np.linalg.norm(f[0] - f[2])


def _mean_rgb(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1, 3).mean(1).astype(np.float64)


def test_scores_rank_a_closer_set_better():
    rng = np.random.default_rng(2)
    real, near, far = (_mean_rgb(rng.integers(lo, lo + 56, (40, 8, 8, 3), dtype=np.uint8)) for lo in (100, 100, 0))
    r_near, r_far = scores(real, near), scores(real, far)
    assert set(r_near) == {"fid", "kid", "kid_std"}
    assert r_near["fid"] < r_far["fid"] and r_near["kid"] < r_far["kid"]


def test_real_features_are_cached_by_content_per_extractor_and_recomputed_when_a_file_changes(tmp_path):
    folder, cache = tmp_path / "real", tmp_path / "cache"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 60, 10, 0)).save(folder / f"{i}.png")
    calls = []

    def counting(x):
        calls.append(len(x))
        return _mean_rgb(x)

    files = sorted(folder.iterdir())
    first = real_features(files, 8, {"rgb": counting}, cache=cache)["rgb"]
    again = real_features(files, 8, {"rgb": counting}, cache=cache)["rgb"]
    assert calls == [4] and np.array_equal(first, again) and first[3, 0] == pytest.approx(180)
    assert real_features(files, 8, {"rgb": counting})["rgb"].shape == (4, 3) and calls == [4, 4]  # no cache
    for p in files:  # the same photos copied afresh (as a re-synced data folder): new times, cache kept
        os.utime(p, ns=(p.stat().st_atime_ns + 10**12, p.stat().st_mtime_ns + 10**12))
    assert np.array_equal(real_features(files, 8, {"rgb": counting}, cache=cache)["rgb"], first)
    assert calls == [4, 4]
    st = files[3].stat()
    Image.new("RGB", (16, 16), (240, 10, 0)).save(folder / "3.png")  # new content, same size and mtime
    assert files[3].stat().st_size == st.st_size
    os.utime(files[3], ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = real_features(files, 8, {"rgb": counting}, cache=cache)["rgb"]
    assert calls == [4, 4, 4] and changed[3, 0] == pytest.approx(240)


def test_generate_and_load_real_give_uint8_rgb(tmp_path):
    t = tiny_trainer()
    imgs = generate_uint8(t.G_ema, 5, batch=2)
    assert imgs.shape == (5, 64, 64, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, generate_uint8(t.G_ema, 5, batch=2))  # seeded: repeatable
    for i in range(3):
        Image.new("RGB", (80, 70), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    real = load_real(tmp_path, 64, names=["0.png", "2.png"])
    assert real.shape == (2, 64, 64, 3) and real[1, 0, 0, 0] == 100


def test_resume_model_continues_from_a_shipped_model_and_logs_sample_quality(tmp_path):
    t = tiny_trainer()
    t.nimg = 40
    shipped = export(t, tmp_path / "m.safetensors", licence="test", provenance="unit test", name="m",
                     dtype=torch.float32)
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "metrics": {"stale": 1.0}}))
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            data / f"{i}.png")
    out = tmp_path / "run"
    args = ["--data", str(data), "--kimg", "0.048", "--batch", "4", "--out", str(out), "--no-bf16",
            "--holdout", "0.3", "--resume-model", str(shipped), "--export", str(tmp_path / "exp" / "m2.safetensors"),
            "--metric", "dlib-face", "--metric-kimg", "0.004", "--metric-fake", "3"]
    assert main(args) == 0
    again = models.load_model(tmp_path / "exp" / "m2.safetensors")
    assert again.config.images_seen == 48  # counted on from the shipped model's 40
    assert again.config.metrics == {} and "continued from m (40 images seen)" in again.config.provenance
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["images_seen"] for r in rows] == [44, 48]  # after each step once 4 more images were seen
    assert all(np.isfinite(r["dlib-face"]["fid"]) and np.isfinite(r["dlib-face"]["kid"]) for r in rows)


def test_cli_scores_a_checkpoint_against_a_folder_and_reuses_its_cached_features(tmp_path, monkeypatch, capsys):
    import models.evaluate_samples as es
    t = tiny_trainer()
    model = export(t, tmp_path / "m.safetensors", licence="test", provenance="unit test", name="m",
                   dtype=torch.float32)
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            data / f"{i}.png")
    calls = []
    monkeypatch.setitem(es.EXTRACTORS, "mobilenet", lambda: lambda x: calls.append(len(x)) or _mean_rgb(x))
    argv = [str(model), "--real", str(data), "--fake", "5", "--feature-cache", str(cache)]
    assert es.main(argv) == 0 and es.main(argv) == 0
    assert calls == [6, 5, 5]  # the real folder once, the samples each run
    first, second = [line for line in capsys.readouterr().out.splitlines() if "[mobilenet] FID" in line]
    assert first == second and "(6 real, 5 fake" in first
    assert len(list(cache.glob("mobilenet-*.npy"))) == 1


def test_mobilenet_features_put_a_cat_nearer_its_mirror_than_a_face():
    from models.sample_quality import mobilenet_features
    load = lambda p: np.asarray(Image.open(p).convert("RGB").resize((64, 64)))  # noqa: E731
    cat, face = load("assets/examples/chelsea_face.png"), load("assets/examples/astronaut_face.png")
    f = mobilenet_features()(np.stack([cat, cat[:, ::-1].copy(), face]))
    assert f.shape == (3, 1280) and np.isfinite(f).all()
    assert np.linalg.norm(f[0] - f[1]) < np.linalg.norm(f[0] - f[2])
