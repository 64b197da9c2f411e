"""App with pivotal tuning: the Settings slider's steps reach the engine, the status names the stage, latent.pt
keeps the tuning, Continue goes on from the pivot (tuned weights are not kept), interpolation says it is untuned."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.handlers import Handlers
from app.session import Session
from app.settings import Settings
from engine.state import load_state
from tests.app_server import TINY, env, one_torch_thread, save_png, two_tone, write_tiny_models
from tests.test_app_handlers import call, ctrl, outputs, sess


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    d = write_tiny_models(tmp_path_factory.mktemp("models"))
    with env(LATENTBRUSH_MODELS=str(d)), one_torch_thread():
        yield Handlers(Settings(temp_dir=tmp_path_factory.mktemp("lbtmp"), max_steps=60, time_limit=60))


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> str:
    return str(save_png(tmp_path_factory.mktemp("in") / "photo.png", two_tone()))


def test_tuned_inpaint_run_continue_and_files(handlers, photo_path):
    session = handlers.set_tuning("inpaint", 6, Session())
    outs = call(handlers, "inpaint", photo_path, session=session, steps=6, every=3)
    record = session.runs["inpaint"]
    assert [(f.step, f.stage) for f in record.frames] == [(3, "latent"), (6, "latent"), (9, "tuning"),
                                                          (12, "tuning")]
    assert outs[-1][4].startswith("**Done**") and "step 12 / 12" in outs[-1][4]
    assert any("(tuning the generator)" in o[4] for o in outs[:-1] if o[4])
    state = load_state(next(f for f in outs[-1][5] if Path(f).name == "latent.pt"))
    assert state.tuned and state.step == 12
    outs = outputs(handlers.continue_run("inpaint", 0, False, TINY, *ctrl("inpaint", steps=3, every=3), session))
    cont = session.runs["inpaint"]
    assert "Tuned weights are not kept" in outs[-1][4]
    assert torch.equal(cont.request.init_latent, record.frames[1].latent)  # the pivot, step 6
    assert [f.step for f in cont.frames] == [3, 6, 9, 12, 15]  # 3 more latent steps, then 6 tuning steps
    assert [f.stage for f in cont.frames] == ["latent"] * 3 + ["tuning"] * 2


def test_tuning_is_off_by_default_and_not_for_scribbles(handlers, photo_path):
    session = Session()
    call(handlers, "reconstruct", photo_path, session=session, steps=3, every=3)
    assert {f.stage for f in session.runs["reconstruct"].frames} == {"latent"}
    handlers.set_tuning("scribble", 6, session)
    call(handlers, "scribble", photo_path, session=session, steps=3, every=3)
    assert session.runs["scribble"].request.config.tuning.steps == 0


def test_interpolation_says_it_uses_the_untuned_generator(handlers, photo_path):
    session = handlers.set_tuning("reconstruct", 6, Session())
    outs = call(handlers, "interpolate", photo_path, session=session, steps=3, every=3)
    assert "untuned generator" in outs[-1][2]
    assert sess(outs[-1]) is session
