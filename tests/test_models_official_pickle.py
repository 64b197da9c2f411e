"""Official StyleGAN2-ADA / StyleGAN3-repo network pickles (as tests/official_format.py writes them, i.e. as the
official training loops do): exact reproduction, file identification, StyleGAN3 refusal, the restricted unpickler."""
from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

import models
from models.official_pickle import PersistentRecord, load_official_pickle, read_pickle
from models.official_source import ADA, OTHER, SG3_STYLEGAN2, SG3_STYLEGAN3, describe_source
from tests.official_format import (FAKE_MODULES, MODULE_SRC, Reducer, discriminator_init_kwargs,
                                   generator_init_kwargs, rewrite_numpy_names_as_numpy1,
                                   stylegan3_generator_record, write_official_pickle)
from tests.tiny import fixed_z, make_tiny_model


@pytest.fixture(scope="module")
def source():
    """The tiny 16 px model the pickles are written from (module scope: it is never modified)."""
    return make_tiny_model(resolution=16, seed=11)


def _fake_modules_loaded() -> list[str]:
    return [name for name in sys.modules if name.split(".")[0] in ("torch_utils", "dnnlib")]


def _assert_same_networks(loaded: models.LoadedModel, source: models.LoadedModel) -> None:
    z = fixed_z(source, 3)
    assert torch.equal(loaded.G.mapping(z, truncation_psi=0.7), source.G.mapping(z, truncation_psi=0.7))
    img = source.G(z, noise_mode="const")
    assert torch.equal(loaded.G(z, noise_mode="const"), img)
    assert loaded.D is not None
    assert torch.equal(loaded.D(img), source.D(img))
    for mine, theirs in ((loaded.G, source.G), (loaded.D, source.D)):
        ref = theirs.state_dict()
        got = mine.state_dict()
        assert got.keys() == ref.keys()
        assert all(torch.equal(got[k], ref[k]) for k in ref)


@pytest.mark.parametrize("layout", ["ada", "sg3"])
def test_official_pickle_reproduces_networks_exactly(tmp_path, source, layout):
    path = write_official_pickle(tmp_path / f"net-{layout}.pkl", source.G, source.D, layout=layout,
                                 config=source.config)
    assert not _fake_modules_loaded()
    loaded = models.load_model(path)
    assert not _fake_modules_loaded(), "loading must not import torch_utils/dnnlib"
    _assert_same_networks(loaded, source)
    assert not loaded.G.training and not any(p.requires_grad for p in loaded.G.parameters())
    cfg = loaded.config
    assert cfg.arch == "stylegan2" and cfg.resolution == 16 and cfg.name == f"net-{layout}"
    g_ref = source.config.g_kwargs
    assert {k: cfg.g_kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")} == \
        {k: g_ref[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    # Options the record leaves out take the source file's defaults (w_avg_beta 0.995 in ADA, 0.998 in sg3).
    assert cfg.g_kwargs["mapping_kwargs"] == {**g_ref["mapping_kwargs"],
                                              "w_avg_beta": 0.995 if layout == "ada" else 0.998}
    for k, v in g_ref["synthesis_kwargs"].items():
        assert cfg.g_kwargs["synthesis_kwargs"][k] == v
    assert "fused_modconv_default" not in cfg.g_kwargs["synthesis_kwargs"]
    # The config of a loaded pickle serialises (it is what gets saved in native format).
    assert models.ModelConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("layout", ["ada", "sg3"])
def test_fixture_is_laid_out_like_the_official_training_loop(tmp_path, source, layout):
    # Guards the fixture itself (checked against pickles written by the NVlabs code, see ENVIRONMENT.md): plain
    # `pickle.dump`, persistence meta dicts with bare class names, nested records, EasyDict option groups.
    path = write_official_pickle(tmp_path / "n.pkl", source.G, source.D, layout=layout, config=source.config)
    raw = path.read_bytes()
    assert raw[:2] == bytes([0x80, pickle.DEFAULT_PROTOCOL])
    seen_meta = []

    def spy(meta):
        seen_meta.append(meta)
        return models.official_pickle._reconstruct_persistent_obj(meta)

    key = ("torch_utils.persistence", "_reconstruct_persistent_obj")
    allowed = dict(models.official_pickle._ALLOWED)
    allowed[key] = spy
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models.official_pickle, "_ALLOWED", allowed)
        data = read_pickle(io.BytesIO(raw))
    expected_keys = ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    if layout == "ada":
        expected_keys = expected_keys[-1:] + expected_keys[:-1]
    assert list(data) == expected_keys
    assert type(data["training_set_kwargs"]) is dict  # `dict(training_set_kwargs)` in the training loop
    assert all(list(m) == ["type", "version", "module_src", "class_name", "state"] for m in seen_meta)
    assert {m["version"] for m in seen_meta} == {6} and {m["type"] for m in seen_meta} == {"class"}
    assert all("." not in m["class_name"] for m in seen_meta)
    g = data["G_ema"]
    assert g.class_name == "Generator" and g.source.kind == (ADA if layout == "ada" else SG3_STYLEGAN2)
    assert data["augment_pipe"].class_name == "AugmentPipe"
    layer = g.state["_modules"]["synthesis"].state["_modules"]["b8"].state["_modules"]["conv0"]
    assert layer.class_name == "SynthesisLayer" and isinstance(layer.state["act_gain"], np.float64)
    assert layer.state["_init_args"] == (16, 8) and layer.state["_init_kwargs"]["up"] == 2
    init = g.state["_init_kwargs"]
    assert type(init) is dict and type(init["mapping_kwargs"]).__name__ == "_EasyDict"
    if layout == "ada":
        assert type(init["synthesis_kwargs"]).__name__ == "_EasyDict"
    else:
        assert init["fused_modconv_default"] == "inference_only" and "synthesis_kwargs" not in init
    assert not any(p.requires_grad for p in g.state["_modules"]["mapping"].state["_parameters"].values())


def test_source_files_are_told_apart_without_running_them(tmp_path):
    assert describe_source(MODULE_SRC["ada"]).kind == ADA
    assert describe_source(MODULE_SRC["sg3"]).kind == SG3_STYLEGAN2
    assert describe_source(MODULE_SRC["stylegan3"]).kind == SG3_STYLEGAN3
    assert describe_source(MODULE_SRC["augment"]).kind == OTHER
    assert describe_source("this is not python (").kind == OTHER
    marker = tmp_path / "ran"
    src = f"open({str(marker)!r}, 'w').close()\n" + MODULE_SRC["ada"]
    info = describe_source(src)
    assert info.kind == ADA and "SynthesisBlock" in info.classes
    assert not marker.exists()


def test_module_src_is_never_run_while_loading(tmp_path, source, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setitem(MODULE_SRC, "ada", f"open({str(marker)!r}, 'w').close()\n" + MODULE_SRC["ada"])
    path = write_official_pickle(tmp_path / "n.pkl", source.G, source.D, config=source.config)
    _assert_same_networks(models.load_model(path), source)
    assert not marker.exists()


@pytest.mark.parametrize("layout,fp16,clamp", [("ada", 0, None), ("sg3", 4, 256)])
def test_options_left_to_the_source_files_defaults(tmp_path, layout, fp16, clamp):
    # The stylegan3 repo's train.py never passes num_fp16_res/conv_clamp (defaults 4 / 256 in its
    # networks_stylegan2.py); ADA's defaults are 0 / None. The loader must apply the right file's defaults.
    base = make_tiny_model(resolution=16, seed=3).config
    g_kwargs = {**base.g_kwargs, "synthesis_kwargs": {**base.g_kwargs["synthesis_kwargs"], "conv_clamp": clamp,
                                                      "num_fp16_res": fp16}}
    d_kwargs = {**base.d_kwargs, "conv_clamp": clamp, "num_fp16_res": fp16}
    config = base.replace(g_kwargs=g_kwargs, d_kwargs=d_kwargs)
    torch.manual_seed(0)
    G, D = models.build_generator(config).eval(), models.build_discriminator(config).eval()
    path = write_official_pickle(tmp_path / "d.pkl", G, D, layout=layout, config=config)
    with open(path, "rb") as f:
        data = read_pickle(f)
    synth_init = (data["G_ema"].state["_init_kwargs"] if layout == "sg3"
                  else data["G_ema"].state["_init_kwargs"]["synthesis_kwargs"])
    assert ("conv_clamp" in synth_init) == (layout == "ada")  # sg3: left to the defaults, as train.py does
    loaded = models.load_model(path)
    assert loaded.config.g_kwargs["synthesis_kwargs"]["conv_clamp"] == clamp
    assert loaded.config.g_kwargs["synthesis_kwargs"]["num_fp16_res"] == fp16
    assert (loaded.config.d_kwargs["conv_clamp"], loaded.config.d_kwargs["num_fp16_res"]) == (clamp, fp16)
    z = fixed_z(G, 2)
    assert torch.equal(loaded.G(z), G(z))


def test_numpy_values_and_augment_arrays_load(tmp_path, source):
    path = write_official_pickle(tmp_path / "np.pkl", source.G, source.D, config=source.config,
                                 numpy_values=True, augment_numpy_arrays=True)
    with open(path, "rb") as f:
        data = read_pickle(f)
    assert isinstance(data["G_ema"].state["_init_kwargs"]["synthesis_kwargs"]["channel_base"], np.integer)
    assert isinstance(data["augment_pipe"].state["imgfilter_bands"], np.ndarray)
    loaded = models.load_model(path)
    _assert_same_networks(loaded, source)
    assert type(loaded.config.g_kwargs["synthesis_kwargs"]["channel_base"]) is int
    assert models.ModelConfig.from_json(loaded.config.to_json()) == loaded.config


def test_networks_converted_from_tensorflow_load(tmp_path, source):
    # legacy.py's convert_tf_generator/discriminator pass every option explicitly: activation for the synthesis
    # layers, an (unused) D mapping network, mbstd_group_size None (= whole batch).
    g_init = generator_init_kwargs(source.G, source.config)
    g_init["synthesis_kwargs"].update(activation="lrelu", architecture="skip", resample_filter=[1, 3, 3, 1],
                                      use_noise=True)
    g_init["mapping_kwargs"].update(embed_features=None, layer_features=None, activation="lrelu",
                                    lr_multiplier=0.01, w_avg_beta=0.995)
    d_init = discriminator_init_kwargs(source.D, source.config)
    d_init.update(cmap_dim=None, block_kwargs={"activation": "lrelu", "resample_filter": [1, 3, 3, 1],
                                               "freeze_layers": 0},
                  mapping_kwargs={"num_layers": 0, "embed_features": None, "layer_features": None,
                                  "activation": "lrelu", "lr_multiplier": 0.1},
                  epilogue_kwargs={"mbstd_group_size": None, "mbstd_num_channels": 1, "activation": "lrelu"})
    path = write_official_pickle(tmp_path / "tf.pkl", source.G, source.D, config=source.config,
                                 g_ema_state_extra={"_init_kwargs": g_init},
                                 d_state_extra={"_init_kwargs": d_init})
    loaded = models.load_model(path)
    z = fixed_z(source, 4)
    assert torch.equal(loaded.G(z), source.G(z))
    img = source.G(z)
    assert loaded.D.b4.mbstd.group_size is None
    assert loaded.D(img).shape == (4, 1)
    bad = dict(g_init, synthesis_kwargs={**g_init["synthesis_kwargs"], "activation": "relu"})
    path = write_official_pickle(tmp_path / "relu.pkl", source.G, source.D, g_ema_state_extra={"_init_kwargs": bad})
    with pytest.raises(models.CheckpointError, match="activation"):
        models.load_model(path)


def test_official_pickle_direct_loader_and_without_discriminator(tmp_path, source):
    path = write_official_pickle(tmp_path / "net.pkl", source.G, source.D)  # kwargs read off the networks
    config, G, D = load_official_pickle(path, name="mine", info=dict(licence="L", domain="cats"))
    assert (config.name, config.licence, config.domain) == ("mine", "L", "cats")
    z = fixed_z(source, 2)
    assert torch.equal(G(z), source.G(z)) and torch.equal(D(G(z)), source.D(G(z)))
    only_g = models.load_model(path, with_discriminator=False)
    assert only_g.D is None and only_g.config.d_kwargs is None
    assert torch.equal(models.load_generator(path)(z), source.G(z))


def test_pickle_without_discriminator_record(tmp_path, source):
    path = write_official_pickle(tmp_path / "g_only.pkl", source.G, None)
    loaded = models.load_model(path)
    assert loaded.D is None
    z = fixed_z(source, 2)
    assert torch.equal(loaded.G(z), source.G(z))


@pytest.mark.parametrize("protocol", [2, 3])
def test_older_pickle_protocols_and_numpy1_names(tmp_path, source, protocol):
    # Official files come from Python 3.7 (default protocol 3) and numpy 1.x (`numpy.core.multiarray`).
    path = write_official_pickle(tmp_path / f"p{protocol}.pkl", source.G, source.D, layout="ada",
                                 config=source.config, protocol=protocol)
    rewrite_numpy_names_as_numpy1(path)
    assert b"cnumpy.core.multiarray\n" in path.read_bytes()
    loaded = models.load_model(path)
    _assert_same_networks(loaded, source)
    assert not _fake_modules_loaded()


def test_extra_entries_and_non_persistent_buffers_are_ignored(tmp_path, source):
    extra = {"progress": {"cur_nimg": torch.tensor(123), "sets": frozenset({1, 2})}}
    # A non-persistent buffer (not part of the state dict) in the G_ema record must not count as unexpected.
    state_extra = {"_buffers": OrderedDict(scratch=torch.zeros(3)), "_non_persistent_buffers_set": {"scratch"}}
    path = write_official_pickle(tmp_path / "extra.pkl", source.G, source.D, extra=extra,
                                 g_ema_state_extra=state_extra)
    loaded = models.load_model(path)
    z = fixed_z(source, 2)
    assert torch.equal(loaded.G(z), source.G(z))


# --------------------------------------------------------------------------------------- strictness


@pytest.mark.parametrize("name", ["synthesis.b8.conv0.affine.weight", "mapping.w_avg",
                                  "synthesis.b16.conv1.noise_const"])
def test_missing_parameter_is_named(tmp_path, source, name):
    path = write_official_pickle(tmp_path / "missing.pkl", source.G, source.D, g_ema_overrides={name: None})
    with pytest.raises(models.CheckpointError, match="missing") as info:
        models.load_model(path)
    assert name in str(info.value)


def test_wrong_shape_is_named(tmp_path, source):
    name = "synthesis.b8.conv1.weight"
    bad = torch.zeros(list(source.G.state_dict()[name].shape[:-1]) + [5])
    path = write_official_pickle(tmp_path / "shape.pkl", source.G, source.D, g_ema_overrides={name: bad})
    with pytest.raises(models.CheckpointError, match="wrong shape") as info:
        models.load_model(path)
    assert name in str(info.value)


def test_stylegan3_generator_is_refused_with_a_clear_message(tmp_path, source):
    path = write_official_pickle(tmp_path / "sg3.pkl", None, source.D, layout="sg3",
                                 g_ema_record=stylegan3_generator_record())
    with pytest.raises(models.CheckpointError) as info:
        models.load_model(path)
    message = str(info.value)
    assert "StyleGAN3" in message and "not supported" in message
    assert "training/networks.py" in message and "networks_stylegan2.py" in message  # what is supported


def test_generator_from_unknown_source_is_refused(tmp_path, source, monkeypatch):
    # Same bare class names, but source that is neither official StyleGAN2 file.
    monkeypatch.setitem(MODULE_SRC, "ada", "class Generator:\n    pass\n")
    path = write_official_pickle(tmp_path / "odd.pkl", source.G, None)
    with pytest.raises(models.CheckpointError, match="neither"):
        models.load_model(path)


def test_qualified_class_names_are_not_what_official_files_hold(tmp_path, source):
    # The official persistence stores the bare name; a record naming "training.networks.Generator" is refused.
    path = write_official_pickle(tmp_path / "q.pkl", source.G, None)
    with open(path, "rb") as f:
        loaded = read_pickle(f)
    loaded["G_ema"].class_name = "training.networks.Generator"
    with pytest.raises(models.CheckpointError, match="unsupported generator class"):
        models.official_pickle.generator_kwargs(loaded["G_ema"])


def test_no_g_ema_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"G": torch.zeros(2)}, protocol=4))
    with pytest.raises(models.CheckpointError, match="G_ema"):
        models.load_model(path)


def test_garbage_is_refused(tmp_path):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"\x80\x04this is not a pickle")
    with pytest.raises(models.CheckpointError):
        models.load_model(path)


# --------------------------------------------------------------------------------------- safety


def _evil(kind: str, marker) -> Reducer:
    if kind == "os.system":
        return Reducer(os.system, (f"touch {marker}",))
    if kind == "builtins.eval":
        return Reducer(builtins.eval, (f"open({str(marker)!r}, 'w').close()",))
    if kind == "builtins.exec":
        return Reducer(builtins.exec, (f"open({str(marker)!r}, 'w').close()",))
    if kind == "subprocess.Popen":
        return Reducer(subprocess.Popen, (["touch", str(marker)],))
    raise ValueError(kind)


REFUSED_NAME = {"os.system": "system", "builtins.eval": "builtins.eval", "builtins.exec": "builtins.exec",
                "subprocess.Popen": "subprocess.Popen"}


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
@pytest.mark.parametrize("where", ["top-level", "inside G_ema"])
def test_disallowed_globals_are_refused_before_running(tmp_path, source, kind, where):
    marker = tmp_path / "pwned"
    evil = _evil(kind, marker)
    if where == "top-level":
        path = write_official_pickle(tmp_path / "evil.pkl", source.G, source.D, extra={"evil": evil})
    else:
        path = write_official_pickle(tmp_path / "evil.pkl", source.G, source.D, g_ema_state_extra={"hook": evil})
    with pytest.raises(models.CheckpointError, match="refused") as info:
        models.load_model(path)
    assert REFUSED_NAME[kind] in str(info.value)
    assert not marker.exists()
    # Same through the bare unpickler.
    with open(path, "rb") as f, pytest.raises(models.CheckpointError, match="refused"):
        read_pickle(f)
    assert not marker.exists()


def test_evil_reduce_is_really_dangerous_without_the_restriction(tmp_path):
    # Guards the test above: the payload would run under plain pickle.
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_evil("builtins.exec", marker)))
    assert marker.exists()


class _StorageFromBytes:
    """Pickles like a tensor storage, i.e. as `torch.storage._load_from_bytes(payload)`."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.payload,)


class _TensorWithStorage:
    def __init__(self, payload: bytes):
        self.storage = _StorageFromBytes(payload)

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, (2,), (1,), False, OrderedDict())


@pytest.mark.parametrize("payload_kind", ["plain-pickle", "legacy-torch-save"])
def test_storage_bytes_needing_full_pickle_are_refused(tmp_path, source, payload_kind):
    marker = tmp_path / "pwned"
    if payload_kind == "plain-pickle":
        payload = pickle.dumps(_evil("os.system", marker), protocol=2)
    else:
        buf = io.BytesIO()
        torch.save({"x": _evil("os.system", marker)}, buf, _use_new_zipfile_serialization=False)
        payload = buf.getvalue()
    assert torch.storage._load_from_bytes.__module__ == "torch.storage"
    path = write_official_pickle(tmp_path / "storage.pkl", source.G, source.D,
                                 g_ema_overrides={"synthesis.b4.conv1.bias": None},
                                 g_ema_state_extra={"_parameters": {"bogus": _TensorWithStorage(payload)}})
    with pytest.raises(models.CheckpointError, match="not a readable network pickle") as info:
        models.load_model(path)
    assert "system" in str(info.value)  # refused inside the storage payload, not later by the strict loader
    assert not marker.exists()


def test_storage_wrapper_used_above_is_valid_with_a_real_payload(tmp_path, source):
    # Same construction with torch's own storage bytes loads, so the refusal above is about the payload.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but it is what tensors pickle as
        func, (payload,) = torch.tensor([1.0, 2.0]).storage().__reduce__()
    assert func is torch.storage._load_from_bytes
    path = write_official_pickle(tmp_path / "storage_ok.pkl", source.G, source.D,
                                 g_ema_state_extra={"_parameters": {"bogus": _TensorWithStorage(payload)}})
    with pytest.raises(models.CheckpointError, match="unexpected 1: bogus"):
        models.load_model(path)


def test_real_storage_bytes_are_accepted():
    # The allowed path: storages as pickled by torch itself (what official files contain).
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    for protocol in (3, 4):
        got = read_pickle(io.BytesIO(pickle.dumps({"t": t, "p": torch.nn.Parameter(t.clone())}, protocol=protocol)))
        assert torch.equal(got["t"], t) and torch.equal(got["p"], t)


def test_fake_modules_never_leak(tmp_path, source):
    before = set(sys.modules)
    write_official_pickle(tmp_path / "a.pkl", source.G, source.D)
    assert not (set(sys.modules) - before) & set(FAKE_MODULES)
    assert not _fake_modules_loaded()


def test_real_world_options_are_honoured(tmp_path):
    # Official configs use conv_clamp=256 and num_fp16_res=4 (and the SG3 repo adds layout-only options);
    # a tiny clamp makes the clamp visible in the output.
    base = make_tiny_model(resolution=16, seed=11).config
    g_kwargs = {**base.g_kwargs, "synthesis_kwargs": {**base.g_kwargs["synthesis_kwargs"], "conv_clamp": 0.3,
                                                      "num_fp16_res": 4}}
    d_kwargs = {**base.d_kwargs, "conv_clamp": 0.3, "num_fp16_res": 4,
                "epilogue_kwargs": {"mbstd_group_size": 2}}
    config = base.replace(g_kwargs=g_kwargs, d_kwargs=d_kwargs)
    torch.manual_seed(0)
    G, D = models.build_generator(config).eval(), models.build_discriminator(config).eval()
    path = write_official_pickle(tmp_path / "clamped.pkl", G, D, layout="sg3", config=config)
    loaded = models.load_model(path)
    assert loaded.config.g_kwargs["synthesis_kwargs"]["conv_clamp"] == 0.3
    assert loaded.config.d_kwargs["epilogue_kwargs"] == {"mbstd_group_size": 2}
    assert loaded.D.b4.mbstd.group_size == 2
    z = fixed_z(G, 4)
    img = G(z)
    assert torch.equal(loaded.G(z), img) and torch.equal(loaded.D(img), D(img))
    unclamped = models.build_generator(base)
    unclamped.load_state_dict(G.state_dict())
    assert not torch.allclose(unclamped.eval()(z), img)
