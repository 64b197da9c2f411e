"""Native format (`NAME.safetensors` + `NAME.json`) and the `load_model` front door (names, paths, errors)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import models
from models.catalogue import CATALOGUE
from tests.conftest import TINY_BUNDLED_NAME
from tests.tiny import fixed_z, make_tiny_model


def _outputs(model: models.LoadedModel, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    img = model.G(fixed_z(model, n), truncation_psi=0.7, noise_mode="const")
    return img, model.D(img)


@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_float32_round_trip_is_bit_identical(tmp_path, arch):
    src = make_tiny_model(arch=arch, seed=5)
    weights = models.save_model(tmp_path / "m", src.config, src.G, src.D)
    assert weights == tmp_path / "m.safetensors"
    assert weights.is_file() and (tmp_path / "m.json").is_file()
    for path in (weights, tmp_path / "m.json", str(weights)):
        loaded = models.load_model(path)
        assert loaded.config == src.config
        ref, got = src.G.state_dict(), loaded.G.state_dict()
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) and got[k].dtype == ref[k].dtype
                                                for k in ref)
        ref_d, got_d = src.D.state_dict(), loaded.D.state_dict()
        assert got_d.keys() == ref_d.keys() and all(torch.equal(got_d[k], ref_d[k]) for k in ref_d)
        img, logits = _outputs(src)
        img2, logits2 = _outputs(loaded)
        assert torch.equal(img, img2) and torch.equal(logits, logits2)
        assert not loaded.G.training and not loaded.D.training
        assert not any(p.requires_grad for p in loaded.G.parameters())
        assert not any(p.requires_grad for p in loaded.D.parameters())
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["format_version"] == 1 and meta["arch"] == arch


def test_float16_storage_is_smaller_and_close(tmp_path):
    src = make_tiny_model(seed=5)
    w32 = models.save_model(tmp_path / "m32", src.config, src.G, src.D)
    w16 = models.save_model(tmp_path / "m16", src.config, src.G, src.D, dtype=torch.float16)
    assert w16.stat().st_size < 0.7 * w32.stat().st_size
    assert all(t.dtype == torch.float16 for t in load_file(str(w16)).values())
    loaded = models.load_model(w16)
    assert all(t.dtype == torch.float32 for t in loaded.G.state_dict().values())
    img, logits = _outputs(src)
    img16, logits16 = _outputs(loaded)
    assert not torch.equal(img, img16)
    assert (img - img16).abs().max() < 0.02 * img.abs().max()
    assert torch.allclose(logits, logits16, rtol=0.02, atol=0.02)


def test_generator_only_and_without_discriminator(tmp_path):
    src = make_tiny_model(seed=5)
    models.save_model(tmp_path / "both", src.config, src.G, src.D)
    assert models.load_model(tmp_path / "both.json", with_discriminator=False).D is None
    G = models.load_generator(tmp_path / "both.safetensors")
    z = fixed_z(src)
    assert torch.equal(G(z), src.G(z))
    # Saving without D drops d_kwargs, and loading gives D None.
    models.save_model(tmp_path / "g_only", src.config, src.G)
    loaded = models.load_model(tmp_path / "g_only.safetensors")
    assert loaded.D is None and loaded.config.d_kwargs is None
    assert not any(k.startswith("D.") for k in load_file(str(tmp_path / "g_only.safetensors")))


def _tampered(tmp_path, edit) -> str:
    src = make_tiny_model(resolution=16, seed=5)
    weights = models.save_model(tmp_path / "m", src.config, src.G, src.D)
    tensors = load_file(str(weights))
    edit(tensors)
    save_file(tensors, str(weights))
    return str(weights)


@pytest.mark.parametrize("key", ["G.synthesis.b8.conv1.affine.bias", "G.mapping.w_avg",
                                 "G.synthesis.b16.conv0.noise_const", "D.b4.fc.weight"])
def test_missing_tensor_is_named(tmp_path, key):
    path = _tampered(tmp_path, lambda t: t.pop(key))
    with pytest.raises(models.CheckpointError, match="missing 1") as info:
        models.load_model(path)
    assert key[2:] in str(info.value)


def test_reshaped_tensor_is_named(tmp_path):
    key = "G.synthesis.b16.torgb.weight"

    def edit(t):
        t[key] = t[key].reshape(t[key].shape[1], t[key].shape[0], 1, 1).clone()

    path = _tampered(tmp_path, edit)
    with pytest.raises(models.CheckpointError, match="wrong shape") as info:
        models.load_model(path)
    msg = str(info.value)
    assert key[2:] in msg and "file [4, 3, 1, 1] vs network [3, 4, 1, 1]" in msg


def test_unexpected_tensors_are_named(tmp_path):
    path = _tampered(tmp_path, lambda t: t.update({"G.synthesis.b4.extra": torch.zeros(2)}))
    with pytest.raises(models.CheckpointError, match="unexpected 1: synthesis.b4.extra"):
        models.load_model(path)
    path = _tampered(tmp_path, lambda t: t.update({"EMA.fc.weight": torch.zeros(2)}))
    with pytest.raises(models.CheckpointError, match="EMA.fc.weight"):
        models.load_model(path)


def test_missing_or_broken_files(tmp_path):
    src = make_tiny_model(resolution=16)
    weights = models.save_model(tmp_path / "m", src.config, src.G, src.D)
    config_text = (tmp_path / "m.json").read_text()
    (tmp_path / "m.json").unlink()
    with pytest.raises(models.CheckpointError, match="m.json"):
        models.load_model(weights)
    (tmp_path / "m.json").write_text(config_text)
    weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(models.CheckpointError, match="not a readable safetensors"):
        models.load_model(weights)


@pytest.mark.parametrize("change", ["future-version", "unknown-key", "bad-arch", "not-json", "no-arch",
                                    "bad-network-kwarg"])
def test_broken_config_raises_checkpoint_error(tmp_path, change):
    src = make_tiny_model(resolution=16)
    models.save_model(tmp_path / "m", src.config, src.G, src.D)
    cfg = tmp_path / "m.json"
    data = json.loads(cfg.read_text())
    if change == "future-version":
        data["format_version"] = 99
    elif change == "unknown-key":
        data["colour"] = "blue"
    elif change == "bad-arch":
        data["arch"] = "stylegan9"
    elif change == "no-arch":
        del data["arch"]
    elif change == "bad-network-kwarg":
        data["g_kwargs"]["colour"] = 1
    cfg.write_text("{not json" if change == "not-json" else json.dumps(data))
    with pytest.raises(models.CheckpointError, match="m.json"):
        models.load_model(tmp_path / "m.safetensors")


def test_config_json_round_trip():
    cfg = make_tiny_model(resolution=64).config.replace(metrics={"fid": 12.5}, images_seen=1000)
    assert models.ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        models.ModelConfig(arch="nope", g_kwargs={})


# ------------------------------------------------------------------------------------------- names and suffixes


def test_load_bundled_model_by_name(tiny_models_dir):
    assert models.bundled_names() == [TINY_BUNDLED_NAME]
    loaded = models.load_model(TINY_BUNDLED_NAME)
    src = make_tiny_model(resolution=32)
    assert loaded.config.name == TINY_BUNDLED_NAME and loaded.config.resolution == 32
    img, logits = _outputs(src)
    img2, logits2 = _outputs(loaded)
    assert torch.equal(img, img2) and torch.equal(logits, logits2)
    assert isinstance(models.load_generator(TINY_BUNDLED_NAME), models.Generator)


def test_model_file_names_the_weights(tiny_models_dir, tmp_path):
    # The file whose bytes a name or path loads (what engine.candidate hashes): a bundled name and a native
    # `.json` both resolve to the `.safetensors` beside it, not to the config.
    bundled = models.model_file(TINY_BUNDLED_NAME)
    assert bundled == tiny_models_dir / f"{TINY_BUNDLED_NAME}.safetensors" and bundled.is_file()
    tiny = make_tiny_model(resolution=16)
    weights = models.save_model(tmp_path / "m.safetensors", tiny.config, tiny.G)
    assert models.model_file(tmp_path / "m.json") == weights
    assert models.model_file(str(weights)) == weights
    with pytest.raises(models.CheckpointError, match="unknown model"):
        models.model_file(tmp_path / "absent.safetensors")


def test_bundled_names_need_both_files(tiny_models_dir, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "half.json").write_text("{}")
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(folder))
    assert models.bundled_names() == []
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(tmp_path / "does-not-exist"))
    assert models.bundled_names() == []


def test_unknown_name_lists_alternatives(tiny_models_dir, network_attempts):
    with pytest.raises(models.CheckpointError, match="unknown model 'no-such-model'") as info:
        models.load_model("no-such-model")
    msg = str(info.value)
    assert TINY_BUNDLED_NAME in msg
    assert all(name in msg for name in CATALOGUE)
    assert network_attempts == []


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(models.CheckpointError, match=r"unsupported model file type '\.onnx'"):
        models.load_model(path)


def test_missing_path(tmp_path):
    with pytest.raises(models.CheckpointError, match="unknown model"):
        models.load_model(tmp_path / "nope.safetensors")
