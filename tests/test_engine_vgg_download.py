"""VGG16 perceptual weights: downloaded once into the LatentBrush cache (hash-checked, progress bar) from a
loopback server standing in for download.pytorch.org; offline the run falls back at once, saying where to put
the file. Never the internet: the served file is a small stand-in whose hash the test injects."""
from __future__ import annotations

import dataclasses
import hashlib
import io

import pytest
import torch

from engine import perceptual
from models import catalogue
from tests.test_models_catalogue import loopback_server  # noqa: F401 - the fixture

TORCHVISION_VGG16 = "https://download.pytorch.org/models/vgg16-397923af.pth"


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No VGG16 file anywhere local, no remembered download failure."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("LATENTBRUSH_VGG16", raising=False)
    monkeypatch.setattr(perceptual, "_vgg16_download_failed", None)


def _stand_in() -> bytes:
    buf = io.BytesIO()
    torch.save({"probe": torch.arange(4.0)}, buf)
    return buf.getvalue()


def _serve(monkeypatch, base: str, routes: dict, body: bytes, *, prefix: str | None = None) -> None:
    routes["/models/vgg16-397923af.pth"] = (200, body, None)
    entry = dataclasses.replace(catalogue.VGG16, url=base + "/models/vgg16-397923af.pth",
                                sha256_prefix=prefix or hashlib.sha256(body).hexdigest()[:8])
    monkeypatch.setattr(catalogue, "VGG16", entry)


def test_entry_is_torchvisions_published_file():
    # torchvision/models/vgg.py: VGG16_Weights.IMAGENET1K_V1; torch.hub checks the sha256 prefix in the name.
    assert catalogue.VGG16.url == TORCHVISION_VGG16
    assert catalogue.VGG16.filename == perceptual.VGG16_FILE == "vgg16-397923af.pth"
    assert catalogue.VGG16.sha256_prefix == "397923af"
    from torchvision.models import VGG16_Weights
    assert VGG16_Weights.IMAGENET1K_V1.url == TORCHVISION_VGG16


def test_downloaded_once_into_the_cache_with_a_progress_bar(fresh, latentbrush_cache, loopback_server, monkeypatch,
                                                            network_attempts, capfd):
    base, routes = loopback_server
    body = _stand_in()
    _serve(monkeypatch, base, routes, body)
    used = []
    monkeypatch.setattr(perceptual, "VGG16Features", lambda state: used.append(state) or torch.nn.Identity())
    net, kind, messages = perceptual.build_extractor("vgg16", D=None, device=torch.device("cpu"))
    assert kind == "vgg16" and messages == () and net is not None
    assert torch.equal(used[0]["probe"], torch.arange(4.0))  # the downloaded file is what the network got
    assert (latentbrush_cache / "vgg16-397923af.pth").read_bytes() == body
    assert not (latentbrush_cache / "vgg16-397923af.pth.part").exists()
    assert "vgg16-397923af.pth" in capfd.readouterr().err  # tqdm's bar, named after the file
    routes.clear()  # from now on the server has nothing: the cached file must be used
    _, kind, _ = perceptual.build_extractor("vgg16", D=None, device=torch.device("cpu"))
    assert kind == "vgg16" and len(network_attempts) == 1


def test_wrong_hash_is_refused_and_nothing_is_cached(fresh, latentbrush_cache, loopback_server, monkeypatch):
    base, routes = loopback_server
    body = _stand_in()
    wrong = "0" * 8 if not hashlib.sha256(body).hexdigest().startswith("0" * 8) else "f" * 8
    _serve(monkeypatch, base, routes, body, prefix=wrong)
    path, why = perceptual.download_vgg16_weights()
    assert path is None and "does not start with the published" in why
    assert list(latentbrush_cache.iterdir()) == []
    _, kind, messages = perceptual.build_extractor("vgg16", D=None, device=torch.device("cpu"))
    assert kind == "none" and "published" in messages[0]


def test_offline_falls_back_at_once_and_says_where_to_put_the_file(fresh, latentbrush_cache, network_attempts):
    # The network guard refuses download.pytorch.org as an offline machine would.
    net, kind, messages = perceptual.build_extractor("vgg16", D=None, device=torch.device("cpu"))
    assert net is None and kind == "none"
    text = " ".join(messages)
    assert str(latentbrush_cache / "vgg16-397923af.pth") in text and "LATENTBRUSH_VGG16" in text
    assert TORCHVISION_VGG16 in text and "perceptual loss disabled" in text
    assert network_attempts == [TORCHVISION_VGG16]
    perceptual.build_extractor("vgg16", D=None, device=torch.device("cpu"))
    assert network_attempts == [TORCHVISION_VGG16]  # not retried in this process: later runs fall back at once


def test_a_local_file_is_used_without_any_download(fresh, latentbrush_cache, network_attempts, monkeypatch,
                                                   tmp_path):
    local = tmp_path / "mine.pth"
    local.write_bytes(_stand_in())
    monkeypatch.setenv("LATENTBRUSH_VGG16", str(local))
    monkeypatch.setattr(perceptual, "VGG16Features", lambda state: torch.nn.Identity())
    _, kind, _ = perceptual.build_extractor("vgg16", D=None, device=torch.device("cpu"))
    assert kind == "vgg16" and network_attempts == []
