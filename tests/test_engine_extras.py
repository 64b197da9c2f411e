"""Interpolation, exports, editing state, metrics, evaluation report."""
import numpy as np
import pytest
import torch

from engine import InversionConfig, prepare
from engine.evaluate import colour_error, main as evaluate_main, paired_comparison
from engine.export import loss_plot, strip, write_gif, write_mp4
from engine.interpolate import common_space, interpolate_latents, interpolation_frames, lift, render, slerp
from engine.metrics import psnr, ssim
from engine.photo import chroma
from engine.state import EditState, load_state, save_state
from engine.types import EngineError
from tests.tiny import install_tiny_model, make_tiny_model


@pytest.fixture(scope="module")
def model():
    return prepare(make_tiny_model(resolution=32))


def test_linear_interpolation_hits_endpoints(model):
    a, b = torch.zeros(model.G.num_ws, 32), torch.ones(model.G.num_ws, 32)
    lats = interpolate_latents(a, b, space="w+", num_frames=5)
    assert len(lats) == 5 and torch.equal(lats[0], a) and torch.equal(lats[-1], b)
    assert torch.allclose(lats[2], torch.full_like(a, 0.5))
    frames = list(interpolation_frames(model, a, b, space="w+", num_frames=3))
    assert np.array_equal(frames[0], render(model, a, "w+")) and np.array_equal(frames[-1], render(model, b, "w+"))


def test_slerp_keeps_norm_for_equal_norm_vectors():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    b = b / b.norm() * a.norm()
    mid = slerp(a, b, 0.5)
    assert abs(float(mid.norm() - a.norm())) < 1e-4
    with pytest.raises(EngineError):
        interpolate_latents(a, b, space="z", num_frames=1)


def test_lift_between_spaces(model):
    z = torch.randn(32)
    assert common_space("z", "w+") == "w+" and common_space("w", "z") == "w"
    w = lift(model, z, "z", "w")
    wp = lift(model, z, "z", "w+")
    assert w.shape == (1, 32) and wp.shape == (model.G.num_ws, 32)
    assert np.array_equal(render(model, z, "z"), render(model, wp, "w+"))


def test_gif_mp4_strip_and_loss_plot(tmp_path):
    frames = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(6)]
    gif = write_gif(tmp_path / "a.gif", frames)
    mp4 = write_mp4(tmp_path / "a.mp4", frames)
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert b"ftyp" in mp4.read_bytes()[:32]
    s = strip(frames, max_frames=3)
    assert s.shape == (32, 96, 3) and s[0, 0, 0] == 0 and s[0, -1, 0] == 100
    plot = loss_plot([(i, {"l2": 1.0 / (i + 1), "total": 2.0 / (i + 1)}) for i in range(10)])
    assert plot.shape == (240, 480, 3) and (plot != 255).any()


def test_edit_state_round_trip(tmp_path):
    st = EditState(latent=torch.randn(10, 32), latent_space="w+", step=42, model_name="cat64",
                   config=InversionConfig(steps=77), noises=(torch.randn(1, 4, 4),))
    back = load_state(save_state(tmp_path / "s.pt", st))
    assert torch.equal(back.latent, st.latent) and back.step == 42 and back.config == st.config
    assert torch.equal(back.noises[0], st.noises[0])
    (tmp_path / "bad.pt").write_bytes(b"not a state")
    with pytest.raises(EngineError):
        load_state(tmp_path / "bad.pt")


def test_metrics():
    rng = np.random.default_rng(0)
    a = np.broadcast_to(np.linspace(40, 200, 32, dtype=np.uint8)[None, :, None], (32, 32, 3)).copy()
    assert ssim(a, a) == pytest.approx(1.0) and psnr(a, a) > 90
    noisy = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(a, noisy) < 0.95 and 10 < psnr(a, noisy) < 30


def _flat_photos(folder, levels):
    """One flat 40 px grey PNG per level, named 0.png, 1.png ...: held-out photos for the evaluate CLI."""
    import cv2
    folder.mkdir()
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 40, 3), level, np.uint8))
    return folder


def test_evaluate_cli_writes_report(tmp_path, monkeypatch, capsys):
    import cv2
    install_tiny_model(tmp_path, monkeypatch)
    imgs = _flat_photos(tmp_path / "imgs", (0, 60, 120))
    (tmp_path / "names.txt").write_text("0.png\n2.png\n")
    assert evaluate_main(["tiny32", "--images", str(imgs), "--names", str(tmp_path / "names.txt"), "--steps", "3",
                          "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "2 held-out images" in out and "PSNR" in out and "SSIM" in out
    assert (tmp_path / "rep" / "samples.png").is_file() and (tmp_path / "rep" / "reconstructions.png").is_file()
    grid = cv2.imread(str(tmp_path / "rep" / "samples.png"))
    assert grid.shape == (256, 256, 3)


def test_paired_comparison_reads_shared_photos_only():
    now = {"a": 30.0, "b": 25.0, "c": 20.0, "new": 99.0}
    before = {"a": 29.0, "b": 26.0, "c": 18.0, "gone": 1.0}
    cmp = paired_comparison(now, before)
    assert cmp["images"] == 3 and cmp["better"] == 2 and cmp["worse"] == 1
    assert cmp["mean_diff"] == pytest.approx(2 / 3)
    assert cmp["stderr"] == pytest.approx(np.std([1.0, -1.0, 2.0], ddof=1) / 3 ** 0.5)
    with pytest.raises(ValueError, match="share no image"):
        paired_comparison({"a": 1.0}, {"b": 1.0})
    # an error score (chroma RMS): a fall is the better photo
    err = paired_comparison(now, before, lower_is_better=True)
    assert err["better"] == 1 and err["worse"] == 2 and err["mean_diff"] == pytest.approx(2 / 3)


def test_colour_error_scores_colour_on_the_targets_luminance():
    rng = np.random.default_rng(0)
    target = rng.integers(30, 220, (16, 16, 3), dtype=np.uint8)
    assert colour_error(target, target) == pytest.approx(0, abs=0.5)  # rounding to uint8 only
    # the same colours at another brightness: no colour error, as the user's luminance is kept
    brighter = np.clip(target.astype(int) + 20, 0, 255).astype(np.uint8)
    assert colour_error(target, brighter) < 1.0
    # a grey result (what a failed colorize gives) scores the target's own chroma RMS
    grey = np.repeat(target.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    assert colour_error(target, grey) == pytest.approx(float(np.sqrt((chroma(target) ** 2).mean())), rel=0.05)
    assert colour_error(target, grey) > 10


def test_evaluate_cli_compares_with_a_baseline_run(tmp_path, monkeypatch, capsys):
    import json

    install_tiny_model(tmp_path, monkeypatch)
    imgs = _flat_photos(tmp_path / "imgs", (0, 90))
    args = ["tiny32", "--images", str(imgs), "--steps", "2"]
    assert evaluate_main(args + ["--out", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "figures.json").read_text())
    assert sorted(first["per_image"]) == ["0.png", "1.png"]
    # a baseline 1 dB below this run on each photo: the comparison must read +1 dB, better on both
    worse = {**first, "per_image": {k: {**v, "psnr": v["psnr"] - 1} for k, v in first["per_image"].items()}}
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    capsys.readouterr()
    assert evaluate_main(args + ["--baseline", str(tmp_path / "worse.json"), "--out", str(tmp_path / "second")]) == 0
    second = json.loads((tmp_path / "second" / "figures.json").read_text())
    b = second["baseline"]
    assert b["images"] == 2
    # the engine's search is deterministic on CPU, so the same model and photos give the same scores again
    assert b["mean_diff"] == pytest.approx(1.0, abs=1e-3) and b["better"] == 2
    assert "photo by photo" in capsys.readouterr().out
    # a baseline without per-image scores is refused before the run
    (tmp_path / "old.json").write_text(json.dumps({"psnr_mean": 20.0}))
    assert evaluate_main(args + ["--baseline", str(tmp_path / "old.json"), "--out", str(tmp_path / "third")]) == 2
    assert "no per-image scores" in capsys.readouterr().err and not (tmp_path / "third").exists()
    # a baseline of other photos fails the comparison, but the run's own report is kept
    (tmp_path / "other.json").write_text(json.dumps({"per_image": {"x.png": {"psnr": 20.0, "ssim": 0.5}}}))
    assert evaluate_main(args + ["--baseline", str(tmp_path / "other.json"), "--out", str(tmp_path / "fourth")]) == 2
    assert "share no image names" in capsys.readouterr().err
    assert "per_image" in json.loads((tmp_path / "fourth" / "figures.json").read_text())


def test_evaluate_inpaint_scores_the_hole_and_compares_there(tmp_path, monkeypatch, capsys):
    import json

    import cv2
    install_tiny_model(tmp_path, monkeypatch)
    imgs = _flat_photos(tmp_path / "imgs", (30, 200))
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[8:16, 4:28] = 255  # white = hole
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    args = ["tiny32", "--images", str(imgs), "--steps", "2", "--task", "inpaint", "--mask", str(tmp_path / "mask.png")]
    assert evaluate_main(args + ["--out", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "figures.json").read_text())
    out = capsys.readouterr().out
    assert first["latent_space"] == "w"  # inpaint searches W by default, so a hard-coded "w+" in the report shows
    assert "in the hole" in out and "w 2 steps" in out and "w+ 2 steps" not in out
    for s in first["per_image"].values():  # a flat photo's hole is scored apart from its known pixels
        assert np.isfinite(s["psnr_hole"]) and s["psnr_hole"] != pytest.approx(s["psnr"], abs=1e-6)
    assert first["psnr_hole_mean"] == pytest.approx(np.mean([s["psnr_hole"] for s in first["per_image"].values()]))
    # a baseline 2 dB lower in the hole and 5 dB higher over the frame: an inpaint run must read the hole, +2 dB
    shifted = {**first, "per_image": {k: {**v, "psnr_hole": v["psnr_hole"] - 2, "psnr": v["psnr"] + 5}
                                      for k, v in first["per_image"].items()}}
    (tmp_path / "base.json").write_text(json.dumps(shifted))
    assert evaluate_main(args + ["--baseline", str(tmp_path / "base.json"), "--out", str(tmp_path / "second")]) == 0
    b = json.loads((tmp_path / "second" / "figures.json").read_text())["baseline"]
    assert b["score"] == "psnr_hole" and b["mean_diff"] == pytest.approx(2.0, abs=1e-3) and b["better"] == 2
    # a reconstruction run's figures hold no hole scores: refused as an inpaint baseline before the run
    assert evaluate_main(["tiny32", "--images", str(imgs), "--steps", "2", "--out", str(tmp_path / "rec")]) == 0
    capsys.readouterr()
    assert evaluate_main(args + ["--baseline", str(tmp_path / "rec"), "--out", str(tmp_path / "third")]) == 2
    assert "psnr_hole" in capsys.readouterr().err and not (tmp_path / "third").exists()


def test_evaluate_colorize_scores_chroma_and_compares_there(tmp_path, monkeypatch, capsys):
    import json

    import cv2
    install_tiny_model(tmp_path, monkeypatch)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, bgr in enumerate([(40, 90, 200), (180, 120, 60)]):  # a warm and a cool flat photo
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((40, 40, 3), bgr, np.uint8))
    args = ["tiny32", "--images", str(imgs), "--steps", "2", "--task", "colorize"]
    assert evaluate_main(args + ["--out", str(tmp_path / "first")]) == 0
    assert "chroma RMS" in capsys.readouterr().out
    first = json.loads((tmp_path / "first" / "figures.json").read_text())
    scores = [s["chroma_rms"] for s in first["per_image"].values()]
    assert all(np.isfinite(scores)) and min(scores) > 0
    assert first["chroma_rms_mean"] == pytest.approx(np.mean(scores))
    # a baseline 3 higher in chroma RMS (worse colour) and 5 dB higher in PSNR: read on the colour, -3, better on both
    shifted = {**first, "per_image": {k: {**v, "chroma_rms": v["chroma_rms"] + 3, "psnr": v["psnr"] + 5}
                                      for k, v in first["per_image"].items()}}
    (tmp_path / "base.json").write_text(json.dumps(shifted))
    assert evaluate_main(args + ["--baseline", str(tmp_path / "base.json"), "--out", str(tmp_path / "second")]) == 0
    assert "in chroma RMS" in capsys.readouterr().out
    b = json.loads((tmp_path / "second" / "figures.json").read_text())["baseline"]
    assert b["score"] == "chroma_rms" and b["mean_diff"] == pytest.approx(-3.0, abs=1e-3)
    assert b["better"] == 2 and b["worse"] == 0
