"""Tuned results on disk and on the command line: latent.pt keeps the fp16 weight deltas and says it was tuned;
a tuned state is never continued as if untuned; `--tune-steps` runs the second stage (not for scribble, and
interpolation says it morphs with the untuned generator)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import models
from engine.cli import main
from engine.state import EditState, load_state, require_untuned, save_state, synthesis_for
from engine.types import EngineError, InversionConfig, TuningConfig
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model(resolution=32)


def test_state_round_trip_keeps_tuning(tmp_path, tiny):
    G = tiny.G
    name = next(n for n, p in G.synthesis.named_parameters() if p.ndim == 4)
    deltas = {name: (0.01 * torch.randn(dict(G.synthesis.named_parameters())[name].shape)).half()}
    cfg = InversionConfig(steps=20, tuning=TuningConfig(steps=15, lr=1e-3))
    st = EditState(latent=torch.randn(G.num_ws, G.w_dim), latent_space="w+", step=35, model_name="tiny32",
                   config=cfg, weight_deltas=deltas)
    back = load_state(save_state(tmp_path / "latent.pt", st))
    assert back.tuned and back.config == cfg and back.step == 35
    assert torch.equal(back.weight_deltas[name], deltas[name]) and back.weight_deltas[name].dtype == torch.float16
    synth = synthesis_for(G, back)
    assert synth is not G.synthesis
    orig = dict(G.synthesis.named_parameters())[name]
    assert torch.allclose(dict(synth.named_parameters())[name], orig + deltas[name].float())
    with pytest.raises(EngineError, match="tuned generator"):
        require_untuned(back)
    plain = load_state(save_state(tmp_path / "plain.pt", EditState(latent=st.latent, latent_space="w+", step=20,
                                                                     model_name="tiny32", config=InversionConfig())))
    assert not plain.tuned and synthesis_for(G, plain) is G.synthesis
    require_untuned(plain)


@pytest.fixture
def env(tmp_path, monkeypatch, tiny):
    d = tmp_path / "models"
    models.save_model(d / "tiny32", tiny.config, tiny.G, tiny.D)
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(d))
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "photo.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    return tmp_path


def test_cli_tune_steps_saves_a_tuned_state(env, capsys):
    out = env / "out"
    code = main(["inpaint", "--model", "tiny32", "--input", str(env / "photo.png"), "--mask", str(env / "mask.png"),
                 "--steps", "4", "--tune-steps", "4", "--tune-lr", "0.001", "--preview-every", "2",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    st = load_state(out / "latent.pt")
    assert st.tuned and st.step == 8 and st.config.tuning == TuningConfig(steps=4, lr=0.001)


def test_cli_refuses_tuning_scribbles_and_notes_interpolation(env, capsys):
    code = main(["scribble", "--model", "tiny32", "--input", str(env / "photo.png"), "--steps", "2",
                 "--tune-steps", "3", "--out", str(env / "s")])
    assert code == 2 and "--tune-steps is for" in capsys.readouterr().err
    code = main(["interpolate", "--model", "tiny32", "--input", str(env / "photo.png"), "--input2",
                 str(env / "photo.png"), "--steps", "2", "--tune-steps", "3", "--frames", "2", "--out", str(env / "i")])
    err = capsys.readouterr().err
    assert code == 0 and "untuned generator" in err
    assert not load_state(env / "i" / "latent_a.pt").tuned


def test_cli_follows_a_models_default_tuning(env, tiny, capsys):
    """A model whose reconstruct defaults tune: the CLI tunes without --tune-steps, not with --tune-steps 0, and
    interpolation reconstructs its ends untuned (silently: the user asked for nothing)."""
    d = env / "models"
    models.save_model(d / "tuner", tiny.config.replace(name="tuner", task_defaults={
        "reconstruct": {"tuning": {"steps": 3}}}), tiny.G, tiny.D)
    common = ["--model", "tuner", "--input", str(env / "photo.png"), "--steps", "2", "--preview-every", "1"]
    assert main(["reconstruct", *common, "--out", str(env / "r")]) == 0
    st = load_state(env / "r" / "latent.pt")
    assert st.tuned and st.step == 5 and st.config.tuning.steps == 3
    assert main(["reconstruct", *common, "--tune-steps", "0", "--out", str(env / "r0")]) == 0
    assert not load_state(env / "r0" / "latent.pt").tuned
    capsys.readouterr()
    assert main(["interpolate", *common, "--input2", str(env / "photo.png"), "--frames", "2",
                 "--out", str(env / "i")]) == 0
    assert "untuned generator" not in capsys.readouterr().err
    assert not load_state(env / "i" / "latent_a.pt").tuned and not load_state(env / "i" / "latent_b.pt").tuned
