"""App handlers with a tiny random model, no server: streaming, final outputs, friendly errors, limits,
continue/rewind/stop, session isolation; plus the small pure pieces (render, settings, model cache, CLI)."""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from app import render
import models
from app.controls import CONTROL_FIELDS, TUNING_TABS, Controls, control_defaults, defaults_key, parse_controls
from app.handlers import Handlers
from app.model_cache import ModelCache, describe, model_choices, resolve
from app.session import Session
from app.settings import Settings
from app.tabs import TABS, TASKS, is_tick
from engine.state import load_state
from tests.tiny import make_tiny_model
from tests.app_server import TINY, box_mask, env, layer_with, one_torch_thread, save_png, two_tone, \
    write_tiny_models

STEPS, EVERY = 12, 3


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = write_tiny_models(tmp_path_factory.mktemp("models"))
    with env(LATENTBRUSH_MODELS=str(d)), one_torch_thread():
        yield d


@pytest.fixture(scope="module")
def handlers(models_dir, tmp_path_factory):
    return Handlers(Settings(temp_dir=tmp_path_factory.mktemp("lbtmp"), max_steps=60, time_limit=60))


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> str:
    return str(save_png(tmp_path_factory.mktemp("in") / "photo.png", two_tone()))


def ctrl(tab: str = "reconstruct", steps: int = STEPS, every: int = EVERY, **changes) -> tuple:
    c = dataclasses.replace(control_defaults(tab), steps=steps, preview_every=every, **changes)
    return dataclasses.astuple(c)


def sketch(size: int = 128) -> dict:
    white = np.full((size, size, 3), 255, np.uint8)
    strokes = box_mask((size, size), 40, 20, 52, 110)
    composite = white.copy()
    composite[strokes] = (255, 140, 0)
    return {"background": white, "layers": [layer_with(strokes, (255, 140, 0), 255)], "composite": composite}


def inpaint_editor(mask: np.ndarray | None = None) -> dict:
    photo = two_tone()
    mask = box_mask(photo.shape[:2], 30, 50, 60, 80) if mask is None else mask
    return {"background": photo, "layers": [layer_with(mask)], "composite": None}


def outputs(gen) -> list[tuple]:
    """A handler's outputs without the ticks it yields while waiting for a frame (timing-dependent)."""
    return [o for o in gen if not is_tick(o)]


def call(handlers: Handlers, tab: str, photo_path: str, *, session=None, **ctrl_changes) -> list[tuple]:
    c = ctrl(tab, **ctrl_changes)
    if tab == "scribble":
        gen = handlers.scribble(sketch(), TINY, *c, session)
    elif tab == "inpaint":
        gen = handlers.inpaint(inpaint_editor(), TINY, *c, session)
    elif tab == "reconstruct":
        gen = handlers.reconstruct(photo_path, False, TINY, *c, session)
    elif tab == "colorize":
        gen = handlers.colorize(photo_path, TINY, *c, session)
    elif tab == "deblur":
        gen = handlers.deblur(photo_path, 9, 2.0, True, TINY, *c, session)
    elif tab == "superres":
        gen = handlers.superres(photo_path, 4, TINY, *c, session)
    else:
        gen = handlers.interpolate(photo_path, photo_path, "", "", 5, TINY, *c, session)
    return outputs(gen)


def load(path: str) -> np.ndarray:
    """A displayed image (handlers hand Gradio PNG files, not arrays)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def sess(out: tuple) -> Session:
    """The session output (index 7 of a task tab's outputs; last of the interpolate tab's)."""
    return out[7] if len(out) > 7 and isinstance(out[7], Session) else out[-1]


def status_of(out: tuple, tab: str) -> str:
    return out[2] if tab == "interpolate" else out[4]


# ------------------------------------------------------------------------------------------ streaming

@pytest.mark.parametrize("tab", TABS)
def test_each_task_streams_intermediate_frames_then_a_final_result(handlers, photo_path, tab):
    outs = call(handlers, tab, photo_path)
    statuses = [status_of(o, tab) for o in outs]
    running = [s for s in statuses if s.startswith(("**Running**", "**Reconstructing", "**Morphing**"))]
    assert len(running) >= 3, statuses
    assert statuses[-1].startswith("**Done**"), statuses[-1]
    assert not any(s.startswith("**Done**") for s in statuses[:-1])
    final = outs[-1]
    session = sess(final)
    assert isinstance(session, Session)
    files = final[6] if tab == "interpolate" else final[5]
    assert files and all(Path(f).is_file() for f in files)
    names = {Path(f).name for f in files}
    if tab == "interpolate":
        assert {"interpolation.gif", "frames.png", "latent_a.pt", "latent_b.pt"} <= names
        assert len(final[5]) == 5  # gallery frames
    else:
        assert {"result.png", "latent.pt", "progress.gif", "loss.png", "input.png"} <= names
        result = load(final[1])
        assert result.dtype == np.uint8 and result.shape[2] == 3
        if tab in ("inpaint", "colorize"):  # the edited photo, at the photo's own size
            assert result.shape == two_tone().shape
        else:
            assert result.shape[0] == handlers.settings.display_size  # 32 px enlarged for display
        if tab != "scribble":
            assert {"composite.png", "quality.csv"} <= names
            assert load(next(f for f in files if f.endswith("composite.png"))).shape == two_tone().shape
            assert "PSNR" in statuses[-1] and "SSIM" in statuses[-1]
        steps = [int(s.split("step ")[1].split(" /")[0]) for s in running]
        assert steps == sorted(steps) and steps[0] < STEPS
        assert f"step {STEPS} / {STEPS}" in statuses[-1]
        assert session.runs[tab].final.step == STEPS
        if tab == "reconstruct":
            assert len(final) == 9 and final[8] is None  # no alignment asked


def test_inpaint_result_keeps_known_pixels_and_outlines_the_hole(handlers, photo_path):
    final = call(handlers, "inpaint", photo_path)[-1]
    record = sess(final).runs["inpaint"]
    known = record.request.known
    assert known.shape == (32, 32) and 0 < (~known).sum() < known.size
    shown = load(final[1])  # the photo with the hole filled, at the photo's own size
    photo = two_tone()
    assert np.array_equal(shown, record.photo.composite("inpaint", record.final.image))
    far = np.ones(photo.shape[:2], bool)
    far[10:80, 30:100] = False  # the painted box (rows 30..60, columns 50..80) and its feather
    assert np.array_equal(shown[far], photo[far])
    assert not np.array_equal(shown[40:50, 60:70], photo[40:50, 60:70])
    # Mask geometry: the 96x128 photo is centre-cropped to 96x96 (columns 16..112), then 32 px (/3).
    hole = ~known
    rows, cols = np.nonzero(hole)
    assert rows.min() == 10 and rows.max() == 19 and cols.min() == 11 and cols.max() == 21


def test_inpaint_accepts_a_black_and_white_mask_layer(handlers):
    """API callers send an opaque mask picture as the layer: white = fill (the editor turns it into RGBA)."""
    hole = box_mask((96, 128), 30, 50, 60, 80)
    bw = np.dstack([np.where(hole, 255, 0).astype(np.uint8)] * 3 + [np.full((96, 128), 255, np.uint8)])
    outs = outputs(handlers.inpaint({"background": two_tone(), "layers": [bw], "composite": None}, TINY,
                                 *ctrl("inpaint"), None))
    known = sess(outs[-1]).runs["inpaint"].request.known
    assert 0 < (~known).sum() < 0.2 * known.size


# ------------------------------------------------------------------------------------------ errors

def _error(gen) -> str:
    with pytest.raises(gr.Error) as ei:
        list(gen)
    return ei.value.message


def test_empty_mask_is_refused(handlers):
    editor = inpaint_editor(np.zeros((96, 128), bool))
    assert "Nothing is painted" in _error(handlers.inpaint(editor, TINY, *ctrl("inpaint")))


def test_full_mask_is_refused(handlers):
    editor = inpaint_editor(np.ones((96, 128), bool))
    assert "covers 100.0% of the image" in _error(handlers.inpaint(editor, TINY, *ctrl("inpaint")))


def test_missing_photo_is_refused(handlers):
    assert "No photo was provided" in _error(handlers.reconstruct(None, False, TINY, *ctrl()))
    editor = {"background": None, "layers": [], "composite": None}
    assert "No photo was provided" in _error(handlers.inpaint(editor, TINY, *ctrl("inpaint")))


def test_non_image_file_is_refused(handlers, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("this is not an image")
    msg = _error(handlers.colorize(str(bogus), TINY, *ctrl("colorize")))
    assert "not an image that can be read" in msg and "Traceback" not in msg


def test_empty_sketch_is_refused(handlers):
    blank = np.full((64, 64, 3), 255, np.uint8)
    empty = {"background": blank, "layers": [np.zeros((64, 64, 4), np.uint8)], "composite": blank}
    assert "Nothing is drawn yet" in _error(handlers.scribble(empty, TINY, *ctrl("scribble")))
    assert "Nothing is drawn yet" in _error(handlers.scribble(None, TINY, *ctrl("scribble")))


def test_plain_stroke_picture_counts_non_white_pixels(handlers):
    pic = np.full((64, 64, 3), 255, np.uint8)
    pic[10:20, 10:50] = (0, 0, 255)
    outs = outputs(handlers.scribble({"background": pic, "layers": [], "composite": None}, TINY, *ctrl("scribble")))
    known = sess(outs[-1]).runs["scribble"].request.known
    assert known.sum() == 5 * 20 and known[6, 6] and not known[0, 0]


@pytest.mark.parametrize("changes, text", [
    (dict(lr=0.0), "'Learning rate' must be greater than 0"),
    (dict(steps=0), "'Steps' must be at least 1"),
    (dict(lr=float("nan")), "Learning rate"),
    (dict(l2=float("nan")), "L2"),
    (dict(l1=float("inf")), "L1"),
    (dict(perceptual=-1.0), "erceptual"),
    (dict(steps=2.5), "'Steps' must be a whole number"),
    (dict(l1=0.0, l2=0.0, perceptual=0.0), "at least one of the L1, L2 or perceptual"),
    (dict(l1=0.0, l2=0.0, perceptual=1.0, perceptual_net="none"), "at least one of the L1, L2 or perceptual"),
    (dict(latent_space="q"), "Latent space must be one of"),
    (dict(every=None), "'Preview every' is empty"),
])
def test_bad_controls_are_refused(handlers, photo_path, changes, text):
    assert text in _error(handlers.reconstruct(photo_path, False, TINY, *ctrl(**changes)))


def test_bad_model_choices_are_refused(handlers, photo_path, tmp_path):
    assert "not a model file" in _error(handlers.reconstruct(photo_path, False, "notes.txt", *ctrl()))
    assert "outside the folders" in _error(handlers.reconstruct(photo_path, False, str(tmp_path / "x.pkl"),
                                                                *ctrl()))
    assert "No model is selected" in _error(handlers.reconstruct(photo_path, False, "", *ctrl()))


def test_unusable_checkpoint_gives_a_friendly_error(handlers, photo_path, models_dir):
    broken = models_dir / "broken.pkl"
    broken.write_bytes(b"not a pickle at all")
    try:
        msg = _error(handlers.reconstruct(photo_path, False, str(broken), *ctrl()))
    finally:
        broken.unlink()
    assert msg.startswith("This model cannot be used") and "Traceback" not in msg


def test_catalogue_model_offline_is_a_clear_error(handlers, photo_path, network_attempts):
    msg = _error(handlers.reconstruct(photo_path, False, "afhqcat", *ctrl()))
    assert "could not download" in msg and "Offline?" in msg
    assert network_attempts and "afhqcat.pkl" in network_attempts[0]


def test_engine_errors_are_friendly(handlers, photo_path):
    assert "does not divide" in _error(handlers.superres(photo_path, 3, TINY, *ctrl("superres")))
    assert "must be odd" in _error(handlers.deblur(photo_path, 4, 2.0, False, TINY, *ctrl("deblur")))


# ------------------------------------------------------------------------------------------ limits

def test_steps_are_clamped_to_the_server_maximum(handlers, photo_path):
    with pytest.warns(UserWarning, match="Steps limited to 60"):
        outs = call(handlers, "reconstruct", photo_path, steps=500, every=20)
    status = outs[-1][4]
    assert "step 60 / 60" in status and "Steps limited to 60 on this server (you asked for 500)" in status


def test_time_limit_returns_the_best_result_so_far(models_dir, photo_path, tmp_path):
    h = Handlers(Settings(temp_dir=tmp_path, max_steps=100_000, time_limit=1.5))
    t0 = time.perf_counter()
    with pytest.warns(UserWarning, match="time limit"):
        outs = outputs(h.reconstruct(photo_path, False, TINY, *ctrl(steps=50_000, every=2)))
    assert time.perf_counter() - t0 < 30
    status = outs[-1][4]
    assert status.startswith("**Stopped at the time limit**") and "best result so far" in status
    record = sess(outs[-1]).runs["reconstruct"]
    assert record.final.losses["total"] == min(f.losses["total"] for f in record.frames)
    assert {"result.png", "latent.pt"} <= {Path(f).name for f in outs[-1][5]}
    assert h.active_runs == 0


# -------------------------------------------------------------------------------- continue / rewind

def test_continue_and_rewind(handlers, photo_path):
    session = sess(call(handlers, "inpaint", photo_path)[-1])
    first = session.runs["inpaint"]
    outs = outputs(handlers.continue_run("inpaint", 0, False, TINY, *ctrl("inpaint", steps=6), session))
    assert outs[-1][4].startswith("**Done**") and f"step {STEPS + 6} / {STEPS + 6}" in outs[-1][4]
    cont = session.runs["inpaint"]
    assert cont is not first and [f.step for f in cont.frames] == [3, 6, 9, 12, 15, 18]
    assert torch.equal(cont.request.init_latent, first.final.latent)
    # Rewind to step 6 and go on from there: later frames are replaced.
    result, _, status = handlers.rewind_preview("inpaint", 6, session)
    assert status.startswith("**Step 6**") and load(result).shape == two_tone().shape
    outs = outputs(handlers.continue_run("inpaint", 6, True, TINY, *ctrl("inpaint", steps=3), session))
    assert [f.step for f in session.runs["inpaint"].frames] == [3, 6, 9]
    assert "Continued from step 6" in outs[-1][4]


def test_continue_lifts_w_to_w_plus(handlers):
    outs = outputs(handlers.scribble(sketch(), TINY, *ctrl("scribble", latent_space="w"), None))
    session = sess(outs[-1])
    assert session.runs["scribble"].final.latent.shape == (1, 32)
    outputs(handlers.continue_run("scribble", 0, False, TINY, *ctrl("scribble", steps=3, latent_space="w+"),
                               session))
    assert session.runs["scribble"].final.latent.shape[0] > 1  # [num_ws, w_dim]


def test_continue_without_a_run_is_refused(handlers):
    assert "no run to continue" in _error(handlers.continue_run("colorize", 0, False, TINY, *ctrl(), Session()))


def test_stop_closes_the_engine_and_keeps_what_was_streamed(handlers, photo_path):
    before = handlers.runs_closed
    gen = handlers.reconstruct(photo_path, False, TINY, *ctrl(steps=60, every=2), None)
    outs = [next(gen) for _ in range(4)]
    assert handlers.active_runs == 1
    gen.close()  # what Gradio does on Stop
    assert handlers.active_runs == 0 and handlers.runs_closed == before + 1
    session = sess(outs[-1])
    status, files, slider = handlers.after_stop("reconstruct", session)
    assert status.startswith("**Stopped**") and "Stopped by you at step" in status
    assert "result.png" in {Path(f).name for f in files}
    assert slider["interactive"] is True and slider["value"] < 60


def test_long_runs_keep_a_bounded_evenly_thinned_set_of_frames(models_dir, photo_path, tmp_path):
    h = Handlers(Settings(temp_dir=tmp_path, max_steps=200, time_limit=60, frames_kept=8))
    session = sess(outputs(h.reconstruct(photo_path, False, TINY, *ctrl(steps=40, every=1), None))[-1])
    steps = [f.step for f in session.runs["reconstruct"].frames]
    assert len(steps) <= 8 and steps == sorted(steps) and steps[0] == 1 and steps[-1] == 40
    gaps = np.diff(steps[1:-1])
    assert len(gaps) >= 3 and gaps.max() == gaps.min()  # thinned evenly, not truncated


class _Request:
    """What Gradio passes as `gr.Request` (only the session hash matters here)."""

    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


def test_unload_releases_the_visitors_runs_files_and_latents(handlers, photo_path):
    request = _Request("visitor-1")
    outs = outputs(handlers.colorize(photo_path, TINY, *ctrl("colorize"), None, request))
    session = sess(outs[-1])
    folder = session.runs["colorize"].folder
    assert folder.is_dir() and session.library and "visitor-1" in handlers.open_sessions
    other = sess(outputs(handlers.colorize(photo_path, TINY, *ctrl("colorize"), None, _Request("visitor-2")))[-1])
    handlers.on_unload(request)
    assert not session.runs and not session.library and not folder.exists()
    assert other.runs["colorize"].folder.is_dir(), "another visitor's runs were released"
    handlers.on_unload(request)  # a second disconnect notice is harmless
    handlers.on_unload(_Request("visitor-2"))
    assert not other.runs


def test_sessions_do_not_share_results(handlers, tmp_path):
    red = save_png(tmp_path / "red.png", np.full((40, 40, 3), (220, 20, 20), np.uint8))
    blue = save_png(tmp_path / "blue.png", np.full((40, 40, 3), (20, 20, 220), np.uint8))
    s1 = sess(outputs(handlers.colorize(str(red), TINY, *ctrl("colorize"), None))[-1])
    s2 = sess(outputs(handlers.colorize(str(blue), TINY, *ctrl("colorize"), None))[-1])
    assert s1 is not s2 and s1.id != s2.id
    t1, t2 = s1.runs["colorize"].request.target, s2.runs["colorize"].request.target
    assert t1[..., 0].mean() > 200 and t2[..., 2].mean() > 200
    assert s1.runs["colorize"].folder != s2.runs["colorize"].folder
    assert {e.key for e in s1.library}.isdisjoint({e.key for e in s2.library})


def test_interpolate_from_earlier_results(handlers, photo_path):
    session = sess(call(handlers, "reconstruct", photo_path)[-1])
    outputs(handlers.colorize(photo_path, TINY, *ctrl("colorize"), session))
    a, b = (e.key for e in session.library[-2:])
    choices = handlers.library_choices(session)[0]["choices"]
    assert {a, b} <= {v for _, v in choices}
    outs = outputs(handlers.interpolate(None, None, a, b, 6, TINY, *ctrl("interpolate"), session))
    assert outs[-1][2].startswith("**Done**") and len(outs[-1][5]) == 6
    assert "Give image A" in _error(handlers.interpolate(None, None, "", "", 4, TINY, *ctrl(), session))


def test_face_alignment_missing_module_warns_and_centre_crops(handlers, photo_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "app.face_align", None)  # import fails like a missing file
    with pytest.warns(UserWarning, match="Face alignment is not available"):
        outs = outputs(handlers.reconstruct(photo_path, True, TINY, *ctrl(), None))
    assert outs[-1][4].startswith("**Done**") and outs[-1][8] is None


# ------------------------------------------------------------------------------------------ helpers

def test_examples_become_editable_layers(handlers, tmp_path):
    pic = np.full((256, 256, 3), 255, np.uint8)
    pic[100:110, 50:200] = (200, 30, 30)
    value = handlers.scribble_example(str(save_png(tmp_path / "s.png", pic)))
    assert value["background"].min() == 255 and value["layers"][0][..., 3].astype(bool).sum() > 0
    photo = save_png(tmp_path / "p.png", two_tone(64, 64))
    mask = save_png(tmp_path / "m.png", (box_mask((64, 64), 10, 10, 20, 20) * 255).astype(np.uint8))
    value = handlers.inpaint_example(str(photo), str(mask))
    assert value["background"].shape[0] >= 256  # small examples are enlarged for painting
    painted = value["layers"][0][..., 3] > 0
    assert 0 < painted.mean() < 0.1


def test_guide_and_defaults(handlers):
    value = handlers.guide(True, TINY)
    assert value["background"].shape == (512, 512, 3) and value["background"].min() > 100
    assert value["layers"][0].shape == (512, 512, 4) and not value["layers"][0].any()
    assert handlers.guide(False, TINY)["background"].min() == 255
    assert handlers.reset_defaults("scribble", TINY) == dataclasses.astuple(control_defaults("scribble"))
    every_tab = tuple(v for tab in TABS for v in dataclasses.astuple(control_defaults(tab)))
    assert len(every_tab) == len(TABS) * len(CONTROL_FIELDS)
    same = handlers.model_changed(TINY, defaults_key("stylegan2"))
    assert same[0] == defaults_key("stylegan2") and all(v == gr.skip() for v in same[1:])
    changed = handlers.model_changed(TINY, defaults_key("dcgan"))
    assert changed[1:1 + len(every_tab)] == every_tab
    assert changed[1 + len(every_tab):] == (gr.skip(),) * len(TUNING_TABS)  # no tuning by default on either
    assert handlers.reset_defaults("reconstruct", TINY)[len(CONTROL_FIELDS):] == (0,)
    assert control_defaults("inpaint", "dcgan").latent_space == "z"
    assert "tiny32" in handlers.model_info(TINY) and "32 px" in handlers.model_info(TINY)


def test_model_task_defaults_reach_the_controls_and_the_run(handlers, models_dir, photo_path):
    """A model's own task overrides (its JSON's task_defaults) set that tab's controls and the run's config;
    switching to or from it resets only the tabs whose defaults differ."""
    m = make_tiny_model(resolution=32)
    overrides = {"deblur": {"latent_space": "w", "weights": {"latent_dist": 1.0, "layer_spread": 2.0}},
                 "reconstruct": {"tuning": {"steps": 6}}}
    models.save_model(models_dir / "tiny32w", m.config.replace(name="tiny32w", task_defaults=overrides), m.G, m.D)
    try:
        _check_task_defaults(handlers)
        _check_default_tuning(handlers, photo_path)
    finally:  # the folder is shared with the module's other tests, which list its models
        for suffix in (".json", ".safetensors"):
            (models_dir / f"tiny32w{suffix}").unlink()


def _check_task_defaults(handlers):
    own = Controls(**dict(zip(CONTROL_FIELDS, handlers.reset_defaults("deblur", "tiny32w")[:len(CONTROL_FIELDS)])))
    assert (own.latent_space, own.latent_dist) == ("w", 1.0)
    assert handlers.reset_defaults("superres", "tiny32w") == handlers.reset_defaults("superres", TINY)
    switched = handlers.model_changed("tiny32w", defaults_key("stylegan2"))  # from tiny32: no overrides
    n = len(CONTROL_FIELDS)
    blocks = {tab: switched[1 + i * n:1 + (i + 1) * n] for i, tab in enumerate(TABS)}
    assert blocks["deblur"] == dataclasses.astuple(own)
    assert all(v == gr.skip() for tab, block in blocks.items() if tab != "deblur" for v in block)
    tunes = dict(zip(TUNING_TABS, switched[1 + len(TABS) * n:], strict=True))
    assert tunes == {tab: 6 if tab == "reconstruct" else gr.skip() for tab in TUNING_TABS}
    assert handlers.reset_defaults("reconstruct", "tiny32w")[n:] == (6,)
    assert handlers.model_changed(TINY, switched[0])[1 + len(TABS) * n + TUNING_TABS.index("reconstruct")] == 0
    back = handlers.model_changed(TINY, switched[0])
    assert back[1 + TABS.index("deblur") * n:1 + (TABS.index("deblur") + 1) * n] == \
        dataclasses.astuple(control_defaults("deblur"))
    # The run uses the override the controls cannot show (layer spread) as well.
    engine_model = handlers.runner.model("tiny32w")[1]
    cfg = handlers.runner.config("deblur", engine_model, own, [])
    assert (cfg.latent_space, cfg.weights.latent_dist, cfg.weights.layer_spread) == ("w", 1.0, 2.0)
    assert handlers.runner.config("deblur", handlers.runner.model(TINY)[1], own, []).weights.layer_spread == 0


def _check_default_tuning(handlers, photo_path):
    """tiny32w tunes reconstructions 6 steps by default: runs of a fresh session (the API's) tune, the slider at 0
    turns it off, and interpolation reconstructs its ends untuned whatever the default."""
    c = ctrl("reconstruct", steps=3, every=3)
    session = Session()
    outputs(handlers.reconstruct(photo_path, False, "tiny32w", *c, session))
    assert [(f.step, f.stage) for f in session.runs["reconstruct"].frames] == [(3, "latent"), (6, "tuning"),
                                                                              (9, "tuning")]
    handlers.set_tuning("reconstruct", 0, session)
    outputs(handlers.reconstruct(photo_path, False, "tiny32w", *c, session))
    assert {f.stage for f in session.runs["reconstruct"].frames} == {"latent"}
    outs = outputs(handlers.interpolate(photo_path, photo_path, "", "", 3, "tiny32w", *ctrl("interpolate", steps=3,
                                                                                          every=3), Session()))
    assert status_of(outs[-1], "interpolate").startswith("**Done**")
    state = load_state(next(f for f in outs[-1][6] if Path(f).name == "latent_a.pt"))
    assert state.config.tuning.steps == 0 and not state.tuned


def test_parse_controls_roundtrip():
    c = Controls()
    assert parse_controls(dataclasses.astuple(c)) == c
    assert len(dataclasses.fields(Controls)) == len(CONTROL_FIELDS)


def test_render_helpers():
    rgb = np.full((64, 64, 3), 255, np.uint8)
    strokes = np.zeros((64, 64), bool)
    strokes[10, :] = True  # one pixel thin: survives shrinking, keeps its colour
    rgb[strokes] = (200, 0, 0)
    colours, mask = render.shrink_strokes(rgb, strokes, 16)
    assert mask[2].all() and mask.sum() == 16 and (colours[mask] == (200, 0, 0)).all()
    assert (colours[~mask] == 255).all()
    outlined = render.with_outline(np.zeros((8, 8, 3), np.uint8), box_mask((8, 8), 2, 2, 6, 6), 64)
    assert outlined.shape == (64, 64, 3) and (outlined == render.OUTLINE_RGB).all(axis=2).any()
    assert render.center_square(np.zeros((10, 30))).shape == (10, 10)
    layers = [layer_with(box_mask((4, 4), 0, 0, 2, 2), (0, 0, 0), 255)]
    assert render.flatten_over_white(layers, (4, 4))[0, 0].tolist() == [0, 0, 0]


def test_model_cache_loads_each_model_once_across_threads():
    calls = []

    def loader(key, device):
        calls.append(key)
        time.sleep(0.05)
        return object()
    cache = ModelCache(device="cpu", maxsize=1, loader=loader)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("a"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"] and len({id(g) for g in got}) == 1
    cache.get("b")
    assert "a" not in cache and "b" in cache and calls == ["a", "b"]


def test_model_choices_and_resolution(models_dir):
    s = Settings()
    values = [v for _, v in model_choices(s)]
    assert values[0] == TINY and "ffhq" in values
    assert describe(TINY, s).resolution == 32 and describe("ffhq", s).resolution == 1024
    assert resolve(TINY, s) == TINY


def test_settings_and_cli_validation(capsys):
    with pytest.raises(ValueError, match="max_steps"):
        Settings(max_steps=0)
    from app.__main__ import build_parser, main
    with env(GRADIO_SERVER_NAME=None, GRADIO_SERVER_PORT=None):
        a = build_parser().parse_args([])
    assert (a.host, a.port, a.share, a.concurrency, a.queue_size, a.max_steps, a.time_limit) == \
        ("127.0.0.1", 7860, False, 4, 16, 1000, 120.0)
    # On a CPU: one torch thread per engine lane, one lane per core; on a GPU: torch's threads, one lane.
    cpu = Settings()
    assert cpu.torch_threads == 1 and cpu.engine_workers == (os.cpu_count() or 1)
    assert Settings(threads=2, workers=None).engine_workers == max(1, (os.cpu_count() or 1) // 2)
    gpu = Settings(device="cuda")
    assert gpu.torch_threads is None and gpu.engine_workers == 1
    with pytest.raises(ValueError, match="workers"):
        Settings(workers=0)
    assert main(["--concurrency", "0"]) == 2
    assert "concurrency must be a positive integer" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--device", "cuda"]) == 2


def test_tasks_cover_the_engine():
    import engine.types
    assert set(TASKS) == set(engine.types.TASKS)


def test_release_free_memory_is_safe_to_call_from_many_threads():
    from app.memory import release_free_memory
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(release_free_memory())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    if sys.platform.startswith("linux"):
        assert release_free_memory() is True  # glibc: trimmed (nothing else is trimming now)


def test_crop_sliders_choose_the_square_the_model_sees(handlers, photo_path):
    """Non-face models: the crop (centre x, centre y, side in percent) frames the photo; the default is the centre."""
    from engine.photo import CropBox, crop_placement, to_frame
    outs = outputs(handlers.colorize(photo_path, TINY, *ctrl("colorize"), None, None, 0, 50, 50))
    record = sess(outs[-1]).runs["colorize"]
    photo = two_tone()
    box = record.photo.placement.box
    assert (box.x, box.y, box.side) == (0, 24, 48)  # 48 px square pushed against the left edge, centred vertically
    assert np.array_equal(record.request.target, to_frame(photo, crop_placement(photo.shape[:2], 32, CropBox(0, 24, 48))))
    assert record.request.target[..., 2].mean() > 150  # only the blue left half
    assert "48x48 square at (0, 24)" in outs[-1][4]


def test_crop_view_outlines_the_square_the_model_sees(handlers, photo_path):
    from app.photo_inputs import OUTLINE_RGB
    view = handlers.crop_view(photo_path, 0, 50, 50, TINY)  # 48 px square at the left edge of the 96x128 photo
    assert view.shape == two_tone().shape
    outline = np.all(view == OUTLINE_RGB, axis=2)
    cols = np.nonzero(outline.any(axis=0))[0]
    assert cols.min() <= 2 and 44 <= cols.max() <= 50
    assert handlers.crop_view(None, 50, 50, 100, TINY) is None


def test_downloads_use_the_full_resolution_result_not_the_kept_thumbnail(handlers, photo_path, monkeypatch):
    """Kept frames are thumbnails (THUMB px) but result.png and composite.png come from the engine's full image:
    with THUMB below the model's 32 px, result.png is still 32 px and the composite matches one built from it."""
    import app.streaming
    monkeypatch.setattr(app.streaming, "THUMB", 8)
    final = call(handlers, "reconstruct", photo_path)[-1]
    record = sess(final).runs["reconstruct"]
    assert record.final.image.shape[0] == 8  # what the session keeps
    files = {Path(f).name: f for f in final[5]}
    result = load(files["result.png"])
    assert result.shape == (32, 32, 3)
    composite = load(files["composite.png"])
    assert np.array_equal(composite, record.photo.composite("reconstruct", result))
    blurred = record.photo.composite("reconstruct", record.final.image)
    assert not np.array_equal(composite, blurred)
