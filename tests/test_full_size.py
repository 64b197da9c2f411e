"""Full-size official-format networks end to end on CPU: an AFHQ-size (512 px config-f, random weights) pickle
written at test time loads, and inpaints a few steps through the CLI and through the API.

The 1024 px (FFHQ-size) runs cost minutes per step on one CPU core, so they are measured by hand (README
"Full-size networks"); the 512 px network has the same per-level channel budget and code path. Each test here
runs 2 steps without the perceptual term (about a minute each on one core).
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

import models
from tests.app_server import box_mask, env, free_port, one_torch_thread, running_app, save_png, two_tone
from tests.full_size import full_size_config, write_full_size_pickle

ROOT = Path(__file__).resolve().parent.parent
RES = 512


@pytest.fixture(scope="module")
def afhq_size(tmp_path_factory) -> Path:
    return write_full_size_pickle(tmp_path_factory.mktemp("fullsize") / "afhq-size.pkl", "afhq")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fullsize-inputs")
    hole = box_mask((96, 128), 30, 50, 60, 80)
    return {"photo": save_png(d / "photo.png", two_tone()),
            "mask": save_png(d / "mask.png", (hole * 255).astype(np.uint8))}


def test_full_size_pickle_loads_as_config_f(afhq_size):
    m = models.load_model(afhq_size)
    want = full_size_config("afhq")
    assert m.config.g_kwargs["synthesis_kwargs"] == want.g_kwargs["synthesis_kwargs"]
    assert {k: m.config.d_kwargs[k] for k in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp")} == \
        dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)
    assert m.config.g_kwargs["mapping_kwargs"]["num_layers"] == 8 and m.G.w_dim == 512
    assert sum(p.numel() for p in m.G.parameters()) > 30e6  # the real thing, not a scaled-down copy
    with torch.no_grad(), one_torch_thread():
        img = m.G(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), noise_mode="const")
    assert img.shape == (1, 3, RES, RES) and torch.isfinite(img).all()


def test_cli_inpaints_with_a_full_size_network(afhq_size, inputs, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "engine", "inpaint", "--model", str(afhq_size), "--input", str(inputs["photo"]),
           "--mask", str(inputs["mask"]), "--out", str(out), "--steps", "2", "--perceptual", "0",
           "--preview-every", "1"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    result = np.asarray(Image.open(out / "result.png"))
    assert result.shape == (RES, RES, 3) and result.std() > 0
    with open(out / "quality.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["step"]) for row in rows] == [1, 2]
    assert all(np.isfinite(float(row["loss"])) for row in rows)


def test_api_inpaints_with_a_full_size_network(afhq_size, inputs, tmp_path_factory, tmp_path):
    settings_mod = pytest.importorskip("app.settings")
    settings = settings_mod.Settings(temp_dir=tmp_path_factory.mktemp("lbtmp-full"), port=free_port(),
                                     concurrency=1, max_steps=10, time_limit=900)
    with env(LATENTBRUSH_MODELS=str(afhq_size.parent), GRADIO_ANALYTICS_ENABLED="False"), one_torch_thread(), \
            running_app(settings) as (url, _demo, _handlers):
        client = Client(url, verbose=False, download_files=str(tmp_path))
        editor = {"background": handle_file(str(inputs["photo"])), "layers": [handle_file(str(inputs["mask"]))],
                  "composite": None}
        out = client.predict(editor=editor, model=str(afhq_size), steps=2, perceptual=0.0, preview_every=1,
                             api_name="/inpaint")
    status, files = str(out[4]), out[5]
    assert "Done" in status, status
    names = {Path(f if isinstance(f, str) else f["path"]).name: f for f in files}
    assert "result.png" in names and "latent.pt" in names
    result_path = names["result.png"] if isinstance(names["result.png"], str) else names["result.png"]["path"]
    result = np.asarray(Image.open(result_path))
    assert result.ndim == 3 and result.std() > 0
