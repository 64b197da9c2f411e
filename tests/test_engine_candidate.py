"""`python -m engine.candidate` on tiny models: both models run on the same inputs, the shipped model's task
defaults, the paired readings, the cache."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import engine.candidate as candidate
import models
from engine.candidate import CandidateOptions, compare, main
from tests.tiny import make_tiny_model

FAST = CandidateOptions(n=3, steps=3, fake=12, fid_seeds=(0, 1), scribble_seeds=(0, 1))
SHIPPED_DEFAULTS = {"scribble": {"steps": 6, "weights": {"latent_dist": 0.2}}, "inpaint": {"lr": 0.05}}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """tiny32 bundled with a held-out list of 4 of 6 photos in a data folder; returns (tmp_path, data folder)."""
    d = tmp_path / "models"
    m = make_tiny_model(resolution=32)
    models.save_model(d / "tiny32", m.config.replace(task_defaults=SHIPPED_DEFAULTS), m.G, m.D)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / f"p{i}.png")
    (d / "tiny32.heldout.txt").write_text("p4.png\np1.png\np5.png\np2.png\n")  # the list's order, not the folder's
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(d))
    return tmp_path, data


def _copy_with_defaults(tmp_path, task_defaults):
    """The shipped weights under another path, its JSON carrying other task defaults (a training snapshot's)."""
    dest = tmp_path / "snap" / "tiny32.safetensors"
    dest.parent.mkdir()
    shutil.copy(tmp_path / "models" / "tiny32.safetensors", dest)
    cfg = json.loads((tmp_path / "models" / "tiny32.json").read_text())
    cfg["task_defaults"] = task_defaults
    dest.with_suffix(".json").write_text(json.dumps(cfg))
    return dest


def test_the_shipped_weights_as_candidate_read_equal_on_every_check(setup):
    tmp_path, data = setup
    own = {"scribble": {"steps": 6, "weights": {"latent_dist": 3.0}}, "inpaint": {"lr": 0.5}}
    cand = _copy_with_defaults(tmp_path, own)
    report = compare(str(cand), "tiny32", tmp_path / "out", options=dataclass_replace(FAST, data=data))
    checks = report["checks"]
    assert checks["fid"]["mean_diff"] == 0 and checks["fid"]["reads"] == "equal"
    assert checks["fid"]["seed_gap"] > 0                                   # two sample seeds, two figures
    for check in ("heldout", "inpaint", "colorize"):
        paired = checks[check]["paired"]
        assert paired["images"] == 3 and paired["mean_diff"] == 0 and checks[check]["reads"] == "equal", check
    # The photos are the held-out list's first three, in its order.
    assert list(checks["heldout"]["shipped"]["per_image"]) == ["p4.png", "p1.png", "p5.png"]
    assert checks["inpaint"]["score"] == "psnr_hole" and checks["colorize"]["score"] == "chroma_rms"
    # Run with the snapshot's own defaults, the scribbles (latent distance 3.0) and inpaint (lr 0.5) would differ.
    assert checks["scribble"]["shipped"] == checks["scribble"]["candidate"]
    assert report["task_defaults"] == SHIPPED_DEFAULTS and report["candidate"]["own_task_defaults"] == own
    md = (tmp_path / "out" / "report.md").read_text()
    assert "the candidate's own" in md and md.count("| equal |") == 4
    grid = np.asarray(Image.open(tmp_path / "out" / "grid.png"))
    assert grid.shape == (8 * 32, 16 * 32 + 8, 3)
    assert np.array_equal(grid[:, :256], grid[:, 264:])                  # same weights, same grid
    for sheet in ("scribble/shipped/scribble.png", "scribble/candidate/scribble.png", "inpaint/candidate/inpaint.png"):
        assert (tmp_path / "out" / sheet).is_file(), sheet


def dataclass_replace(options, **changes):
    import dataclasses
    return dataclasses.replace(options, **changes)


def test_another_model_differs_and_the_shipped_runs_come_from_the_cache(setup, monkeypatch):
    tmp_path, data = setup
    other = make_tiny_model(resolution=32, seed=7)
    cand = models.save_model(tmp_path / "cand" / "tiny32", other.config, other.G, other.D)
    calls = []
    real_evaluate = candidate.evaluate
    monkeypatch.setattr(candidate, "evaluate", lambda model, *a, **k: calls.append(model) or real_evaluate(
        model, *a, **k))
    options = dataclass_replace(FAST, data=data, checks=("fid", "heldout", "scribble"))
    first = compare(str(cand), "tiny32", tmp_path / "a", options=options, cache=tmp_path / "cache")
    assert len(calls) == 2
    assert first["checks"]["fid"]["mean_diff"] != 0
    paired = first["checks"]["heldout"]["paired"]
    assert paired["mean_diff"] != 0 and paired["better"] + paired["worse"] == 3
    assert first["checks"]["heldout"]["reads"] in ("better", "worse", "equal")
    calls.clear()
    second = compare(str(cand), "tiny32", tmp_path / "b", options=options, cache=tmp_path / "cache")
    assert calls == []                                   # both models' runs were cached (keyed by file hash)
    assert second["checks"] == first["checks"]
    assert (tmp_path / "b" / "scribble" / "shipped" / "scribble.png").is_file()  # the cached sheet is copied
    calls.clear()
    third = compare(str(cand), "tiny32", tmp_path / "c", options=dataclass_replace(options, steps=4),
                    cache=tmp_path / "cache")
    assert len(calls) == 2 and third["checks"]["heldout"]["shipped"]["steps"] == 4   # new settings, new runs
    calls.clear()
    monkeypatch.setattr(candidate, "code_digest", lambda: "changed engine")
    compare(str(cand), "tiny32", tmp_path / "d", options=options, cache=tmp_path / "cache")
    assert len(calls) == 2                               # results of other code are not reused


def test_cli_reads_seed_ranges_and_refuses_unknown_checks(setup, capsys):
    tmp_path, data = setup
    assert candidate._seeds("0-2,5") == (0, 1, 2, 5)
    assert main(["tiny32", "--shipped", "tiny32", "--out", str(tmp_path / "o"), "--checks", "fid,eyes"]) == 2
    assert "unknown check(s) eyes" in capsys.readouterr().err
    assert main(["tiny32", "--shipped", "tiny32", "--out", str(tmp_path / "o"), "--checks", "heldout",
                 "--data", str(data), "--n", "2", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "| reconstruction PSNR (dB), 2 held-out photos | " in out and "| +0.00 ± 0.00 dB" in out
