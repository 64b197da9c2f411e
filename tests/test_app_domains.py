"""A model per domain: `--models` parsing and its errors, which model each tab starts on, the Model list
following tabs and face photos (app.domains), start-up preloading, and the served app's defaults (gradio_client).

Tiny random networks named `tinycat` (a "cats" domain) and `tinyface` stand for the two domains.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import models
from app.domains import (ModelFollower, domain_model_for_example, domain_of, model_for_tab, parse_models,
                         preload_names)
from app.settings import EXAMPLES_DIR, Settings
from tests.app_server import env, free_port, one_torch_thread, running_app, save_png
from tests.tiny import make_tiny_model

SKIP = gr.skip()
PAIR = (("cat", "tinycat"), ("face", "tinyface"))


def write_domain_models(folder: Path) -> Path:
    """tinycat (32 px, domain 'cats (test)') and tinyface (16 px, domain 'human faces (test)'; its reconstructions
    tune 20 steps by default, as the bundled face64's do 100)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, res, domain, own in (("tinycat", 32, "cats (test)", {}),
                                   ("tinyface", 16, "human faces (test)", {"reconstruct": {"tuning": {"steps": 20}}})):
        if not (folder / f"{name}.json").is_file():
            m = make_tiny_model(resolution=res)
            cfg = dataclasses.replace(m.config, name=name, domain=domain, task_defaults=own)
            models.save_model(folder / name, cfg, m.G, m.D)
    return folder


@pytest.fixture
def domain_dir(tmp_path_factory, monkeypatch) -> Path:
    folder = write_domain_models(tmp_path_factory.getbasetemp() / "domain-models")
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(folder))
    return folder


# ------------------------------------------------------------------------------------------ parsing

def test_parse_models_accepts_bundled_catalogue_and_file_names(domain_dir):
    assert parse_models("cat=tinycat,face=tinyface") == PAIR
    assert parse_models(" face = ffhq , cat=afhqcat ") == (("face", "ffhq"), ("cat", "afhqcat"))
    path = str(domain_dir / "tinyface.json")
    assert parse_models(f"face={path}") == (("face", path),)


@pytest.mark.parametrize("spec, words", [
    ("cat=afhqkat", ["unknown model 'afhqkat' for cat", "tinycat", "afhqcat", "not an existing file"]),
    ("dog=afhqdog", ["unknown domain 'dog'", "cat, face"]),
    ("cat", ["'cat' is not DOMAIN=MODEL"]),
    ("cat=", ["'cat=' is not DOMAIN=MODEL"]),
    ("cat=tinycat,cat=afhqcat", ["domain 'cat' is given twice"]),
    (" , ", ["--models is empty"]),
])
def test_parse_models_errors_say_what_is_wrong(domain_dir, spec, words):
    with pytest.raises(ValueError) as info:
        parse_models(spec)
    for word in words:
        assert word in str(info.value)


def test_cli_refuses_unknown_names_before_starting(domain_dir, capsys):
    from app.__main__ import main

    assert main(["--models", "cat=tinycat,face=nosuchmodel", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuchmodel' for face" in err and "tinyface" in err


def test_settings_refuse_unknown_domains():
    with pytest.raises(ValueError, match="unknown domain 'dog'"):
        Settings(models=(("dog", "afhqdog"),))
    with pytest.raises(ValueError, match="given twice"):
        Settings(models=(("cat", "a"), ("cat", "b")))
    assert Settings(models=[["cat", "a"]]).models == (("cat", "a"),)


# ------------------------------------------------------------------------------------------ mapping

def test_each_tab_starts_on_its_domains_model(domain_dir):
    s = Settings(models=PAIR)
    assert model_for_tab(s, "scribble") == "tinycat"
    for tab in ("inpaint", "reconstruct", "colorize", "deblur", "superres", "interpolate"):
        assert model_for_tab(s, tab) == "tinyface", tab
    assert preload_names(s) == ["tinycat", "tinyface"]
    # --model is the operator's one model for every tab (and is loaded first).
    forced = Settings(model="tinyface", models=PAIR)
    assert model_for_tab(forced, "scribble") == "tinyface"
    assert preload_names(forced) == ["tinyface", "tinycat"]


def test_defaults_are_the_bundled_domain_models_when_present(domain_dir, tmp_path, monkeypatch):
    # Neither cat64 nor face64 here: every tab falls back to the first bundled model.
    s = Settings()
    assert model_for_tab(s, "scribble") == model_for_tab(s, "inpaint") == "tinycat"
    assert preload_names(s) == []
    for name in ("cat64", "face64"):  # bundled names that are the defaults
        for suffix in (".json", ".safetensors"):
            (domain_dir / name).with_suffix(suffix).write_bytes((domain_dir / "tinycat").with_suffix(suffix)
                                                               .read_bytes())
    try:
        assert model_for_tab(s, "scribble") == "cat64" and model_for_tab(s, "inpaint") == "face64"
        assert domain_model_for_example(s, "face64") == "face64"
        mapped = Settings(models=PAIR)
        assert domain_model_for_example(mapped, "face64") == "tinyface"  # examples follow the mapping
        assert domain_model_for_example(mapped, "cat64") == "tinycat"
        assert domain_model_for_example(mapped, None) is None
    finally:
        for name in ("cat64", "face64"):
            for suffix in (".json", ".safetensors"):
                (domain_dir / name).with_suffix(suffix).unlink()


def test_domain_of_a_choice(domain_dir):
    s = Settings(models=(("face", "tinyface"),))
    assert domain_of("tinyface", s) == "face"
    assert domain_of("tinycat", s) == "cat"      # not mapped, but its description names cats
    assert domain_of("afhqcat", s) == "cat"      # catalogue: "cat faces (AFHQ cat)"
    assert domain_of("ffhq", s) is None          # unknown unless mapped: nothing switches away from it
    assert domain_of("", s) is None


# ------------------------------------------------------------------------------------------- events

def test_tabs_move_the_model_list_until_the_visitor_picks(domain_dir):
    follow = ModelFollower(Settings(models=PAIR))
    assert follow.on_tab("inpaint", "tinycat", False) == "tinyface"
    assert follow.on_tab("scribble", "tinyface", False) == "tinycat"
    assert follow.on_tab("scribble", "tinycat", False) == SKIP
    assert follow.on_tab("inpaint", "tinycat", True) == SKIP  # the visitor's own pick stays


def _face_detection_available() -> bool:
    from app import face_align

    return face_align.availability()[0]


@pytest.mark.skipif(not _face_detection_available(), reason="dlib face detection is not installed")
def test_a_face_photo_on_a_photo_tab_switches_a_cat_model_to_the_face_model(domain_dir, tmp_path):
    follow = ModelFollower(Settings(models=PAIR))
    face = str(EXAMPLES_DIR / "astronaut.png")
    flat = str(save_png(tmp_path / "flat.png", np.full((120, 160, 3), 128, np.uint8)))
    assert follow.has_face(face) and not follow.has_face(flat)
    assert follow.on_photo("reconstruct", face, "tinycat") == "tinyface"
    editor = {"background": np.asarray(Image.open(face).convert("RGB")), "layers": []}
    assert follow.on_photo("inpaint", editor, "tinycat") == "tinyface"  # the Inpaint editor's value
    assert follow.on_photo("reconstruct", flat, "tinycat") == SKIP     # no face: no change
    assert follow.on_photo("scribble", face, "tinycat") == SKIP        # not a photo tab
    assert follow.on_photo("reconstruct", face, "tinyface") == SKIP    # already the face model
    assert follow.on_photo("reconstruct", None, "tinycat") == SKIP
    assert follow.on_photo("reconstruct", str(tmp_path / "missing.png"), "tinycat") == SKIP


# -------------------------------------------------------------------------------- preload and app

def test_preload_loads_every_domains_model(domain_dir, tmp_path):
    from app.__main__ import _preload
    from app.handlers import Handlers

    handlers = Handlers(Settings(models=PAIR, temp_dir=tmp_path))
    with one_torch_thread():
        _preload(handlers)
    assert "tinycat" in handlers.cache and "tinyface" in handlers.cache and handlers.cache.loads == 2


def test_served_app_defaults_and_a_model_given_as_a_path(domain_dir, tmp_path):
    """The Model list starts on the cat model (Scribble is the first tab); a face model given to --models as a
    file path outside the models folder is offered and runs."""
    from gradio_client import Client, handle_file

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for suffix in (".json", ".safetensors"):
        (outside / "myface").with_suffix(suffix).write_bytes((domain_dir / "tinyface").with_suffix(suffix)
                                                            .read_bytes())
    face_path = str(outside / "myface.json")
    settings = Settings(temp_dir=tmp_path / "lbtmp", port=free_port(), models=(("cat", "tinycat"),
                                                                              ("face", face_path)))
    photo = save_png(tmp_path / "photo.png", np.full((40, 40, 3), 90, np.uint8))
    with env(GRADIO_ANALYTICS_ENABLED="False"), one_torch_thread(), running_app(settings) as (url, demo, _):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        api = client.view_api(return_format="dict", print_info=False)
        model_param = next(p for p in api["named_endpoints"]["/scribble"]["parameters"]
                           if p["parameter_name"] == "model")
        assert model_param["parameter_default"] == "tinycat"
        dropdown = next(b for b in demo.config["components"] if b.get("props", {}).get("label") == "Model")
        assert face_path in [c[1] for c in dropdown["props"]["choices"]]
        out = client.predict(image=handle_file(str(photo)), model=face_path, steps=2, preview_every=1,
                             api_name="/colorize")
        status = str(out[4])
        assert status.startswith("**Done**") and "step 2 / 2" in status, status


def test_flags_from_the_environment_and_the_command_line_overrides_them(domain_dir, monkeypatch, capsys):
    from app.__main__ import build_parser, env_args, main

    monkeypatch.setenv("LATENTBRUSH_ARGS", "--models 'cat=tinycat,face=nosuchface' --device cpu")
    assert main(["--port", str(free_port())]) == 2  # the Space variable's flags are read and checked
    assert "unknown model 'nosuchface' for face" in capsys.readouterr().err
    args = build_parser().parse_args(env_args() + ["--models", "cat=tinycat,face=tinyface"])
    assert args.models == "cat=tinycat,face=tinyface" and args.device == "cpu"
