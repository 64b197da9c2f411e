"""Shared fixtures: tiny random networks, an isolated models folder and cache, and no real network access.

Every test runs with `LATENTBRUSH_CACHE` pointing at its own empty temporary folder, and with
`urllib.request.urlopen` refusing every host except the loopback interface (attempts are recorded in
`network_attempts`), so nothing is ever downloaded.
"""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import models
from tests.tiny import make_tiny_model, tiny_config

TINY_BUNDLED_NAME = "tiny32"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def network_attempts(monkeypatch) -> list[str]:
    """URLs passed to urlopen during the test; non-loopback ones fail with URLError, never reach the network."""
    attempts: list[str] = []
    real_urlopen = urllib.request.urlopen

    def guarded_urlopen(url, *args, **kwargs):
        full = url.full_url if isinstance(url, urllib.request.Request) else str(url)
        attempts.append(full)
        if urllib.parse.urlsplit(full).hostname not in _LOOPBACK:
            raise urllib.error.URLError(f"network access is disabled in tests (tried {full})")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded_urlopen)
    return attempts


@pytest.fixture(autouse=True)
def latentbrush_cache(tmp_path_factory, monkeypatch, network_attempts) -> Path:
    """An empty download cache (`$LATENTBRUSH_CACHE`) for this test; the network guard is always on."""
    cache = tmp_path_factory.mktemp("latentbrush-cache")
    monkeypatch.setenv("LATENTBRUSH_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_model() -> models.LoadedModel:
    """32 px StyleGAN2 with 4..16 channels, z_dim = w_dim = 32, seeded; eval mode, requires_grad False."""
    return make_tiny_model(resolution=32)


@pytest.fixture
def tiny_dcgan() -> models.LoadedModel:
    """64 px DCGAN with ngf = ndf = 8, z_dim = 16, seeded; eval mode, requires_grad False."""
    return make_tiny_model(arch="dcgan")


@pytest.fixture(params=[16, 32, 64, 128, 256], ids=lambda r: f"{r}px")
def tiny_model_any_res(request) -> models.LoadedModel:
    """The tiny StyleGAN2 at every supported test resolution."""
    return make_tiny_model(resolution=request.param)


@pytest.fixture(scope="session")
def _tiny_models_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundled-models")
    model = make_tiny_model(resolution=32)
    models.save_model(folder / TINY_BUNDLED_NAME, model.config, model.G, model.D)
    return folder


@pytest.fixture
def tiny_models_dir(_tiny_models_folder, monkeypatch) -> Path:
    """`$LATENTBRUSH_MODELS` -> a folder holding only the native model `tiny32` (= make_tiny_model(resolution=32))."""
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(_tiny_models_folder))
    return _tiny_models_folder


__all__ = ["TINY_BUNDLED_NAME", "make_tiny_model", "tiny_config"]
