"""Training pipeline: a few real steps of each architecture, resume state, export, CLI."""
import dataclasses
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import models
from models.augment import diff_augment
from models.dataset import is_held_out, sharpness, split_files
from models.native import load_native
from models.train import Trainer, TrainOptions, export, lr_factor, main, run_segment, sample_batch
from tests.tiny import tiny_trainer


@pytest.mark.parametrize("arch,extra", [("stylegan2", dict(pl_weight=2.0, pl_interval=1, r1_interval=1)),
                                        ("dcgan", {})])
def test_steps_resume_and_export(tmp_path, arch, extra):
    t = tiny_trainer(arch=arch, **extra)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    losses = t.step()
    assert all(bool(torch.isfinite(v)) for v in losses.values()) and t.nimg == 4
    if arch == "stylegan2":
        assert losses["r1"] > 0 and float(t.pl_mean) > 0
    assert any(not torch.equal(before[k], v) for k, v in t.G.state_dict().items())
    torch.save(t.state(), tmp_path / "state.pt")
    t2 = tiny_trainer(arch=arch, **extra)
    t2.load_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert t2.nimg == 4 and all(torch.equal(a, b) for a, b in zip(t.G_ema.state_dict().values(),
                                                                 t2.G_ema.state_dict().values()))
    path = export(t, tmp_path / "m.safetensors", licence="test", provenance="unit test", name="m",
                  dtype=torch.float32)
    loaded = models.load_model(path)
    assert loaded.config.images_seen == 4 and loaded.config.licence == "test" and loaded.D is not None
    z = torch.randn(2, t.G.z_dim)
    assert torch.allclose(loaded.G(z), t.G_ema.eval()(z), atol=1e-5)


def test_diff_augment_keeps_shape_and_gradient():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None


def test_holdout_split_is_stable_and_disjoint(tmp_path):
    for i in range(60):
        Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / f"img{i:03d}.png")
    train, held = split_files(tmp_path, holdout_fraction=0.2)
    assert held and not set(train) & set(held) and len(train) + len(held) == 60
    assert all(is_held_out(p.name, fraction=0.2) for p in held)
    assert split_files(tmp_path, holdout_fraction=0.2) == (train, held)


def _image_folder(data, n=6):
    data.mkdir()
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(
            data / f"{i}.jpg")
    return data


def test_cli_trains_exports_and_resumes(tmp_path):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    args = ["--data", str(data), "--arch", "dcgan", "--kimg", "0.008", "--batch", "4", "--out", str(out),
            "--export", str(tmp_path / "exp" / "m.safetensors"), "--no-bf16", "--holdout", "0"]
    assert main(args) == 0
    assert (out / "state.pt").is_file() and (out / "samples.png").is_file() and (out / "log.txt").is_file()
    assert models.load_model(tmp_path / "exp" / "m.safetensors").config.images_seen == 8
    assert main(args[:5] + ["0.016"] + args[6:] + ["--resume", str(out / "state.pt")]) == 0
    assert models.load_model(tmp_path / "exp" / "m.safetensors").config.images_seen == 16


def test_continue_takes_the_runs_own_state_when_there_is_one_and_keeps_every_export(tmp_path, caplog):
    # The same command in every session: a fresh machine starts from the shipped weights, a kept one goes on from
    # the run's state.pt (its optimiser state), and each snapshot's export is kept under its image count.
    caplog.set_level(logging.INFO, logger="models.train")
    data = _image_folder(tmp_path / "data")
    common = ["--data", str(data), "--arch", "dcgan", "--batch", "4", "--no-bf16", "--holdout", "0"]
    shipped = tmp_path / "shipped.safetensors"
    assert main(common + ["--kimg", "0.008", "--out", str(tmp_path / "a"), "--export", str(shipped)]) == 0
    out, snaps = tmp_path / "line", tmp_path / "line" / "snaps"
    line = common + ["--continue", "--resume-model", str(shipped), "--out", str(out),
                     "--export", str(out / "m.safetensors"), "--keep-exports", str(snaps)]
    assert main(line + ["--kimg", "0.016"]) == 0
    assert "resumed from model" in caplog.text and "continuing it" not in caplog.text
    caplog.clear()
    assert main(line + ["--kimg", "0.024"]) == 0
    assert "--continue: " in caplog.text and "resumed from " + str(out / "state.pt") in caplog.text
    assert sorted(p.name for p in snaps.iterdir()) == ["m_16.json", "m_16.safetensors", "m_24.json",
                                                      "m_24.safetensors"]
    assert models.load_model(snaps / "m_16.safetensors").config.images_seen == 16
    kept = models.load_model(snaps / "m_24.safetensors")
    assert kept.config.images_seen == 24
    assert (snaps / "m_24.safetensors").read_bytes() == (out / "m.safetensors").read_bytes()
    assert "continued from shipped (8 images seen)" in kept.config.provenance


def test_continue_and_keep_exports_refuse_what_they_cannot_do(tmp_path, capsys):
    base = ["--data", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        main(base + ["--continue", "--resume", str(tmp_path / "state.pt")])
    assert "leave out --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--keep-exports", str(tmp_path / "k")])
    assert "give --export too" in capsys.readouterr().err


def test_precision_auto_takes_bf16_only_where_the_cpu_runs_it(monkeypatch):
    from models import train
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not train.use_bf16("auto", cpu)
    assert train.use_bf16("bf16", cpu) and not train.use_bf16("fp32", cpu)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert train.use_bf16("auto", cpu)
    with pytest.raises(ValueError, match="precision"):
        train.use_bf16("fp16", cpu)


def test_resumed_state_of_a_continued_model_keeps_its_history(tmp_path):
    data = _image_folder(tmp_path / "data")
    common = ["--data", str(data), "--arch", "dcgan", "--batch", "4", "--no-bf16", "--holdout", "0"]
    first = tmp_path / "first.safetensors"
    assert main(common + ["--kimg", "0.008", "--out", str(tmp_path / "a"), "--export", str(first)]) == 0
    # The model's own task defaults (chosen with its gallery) travel with its weights to every later export.
    own = {"deblur": {"latent_space": "z", "weights": {"latent_dist": 1.0}}}
    meta = json.loads(first.with_suffix(".json").read_text())
    first.with_suffix(".json").write_text(json.dumps({**meta, "task_defaults": own}))
    cont = tmp_path / "cont.safetensors"
    run = ["--out", str(tmp_path / "b"), "--export", str(cont)]
    assert main(common + run + ["--kimg", "0.016", "--resume-model", str(first)]) == 0
    after_model = models.load_model(cont).config.provenance
    assert models.load_model(cont).config.task_defaults == own
    assert main(common + run + ["--kimg", "0.024", "--resume", str(tmp_path / "b" / "state.pt")]) == 0
    after_state = models.load_model(cont).config
    assert "continued from first (8 images seen)" in after_model
    assert after_state.provenance.startswith(after_model.split("; then ")[0] + "; then ")
    assert after_state.images_seen == 24
    assert after_state.task_defaults == own
    # ... but not to a fine-tune onto another domain, whose gallery has not chosen them.
    tuned = tmp_path / "tuned.safetensors"
    assert main(common + ["--kimg", "0.008", "--resume-model", str(cont), "--images-seen", "0", "--domain", "other",
                          "--out", str(tmp_path / "c"), "--export", str(tuned)]) == 0
    assert models.load_model(tuned).config.task_defaults == {}
    # Each export says how far its own run got, not the first export's count.
    assert after_model.endswith("held out by name hash) to 16 images (fp32, batch 4, lr 0.0002, DiffAugment color+translation)")
    assert after_state.provenance.endswith("to 24 images (fp32, batch 4, lr 0.0002, DiffAugment color+translation)")


def test_run_segment_names_the_options_that_shape_stylegan2_weights():
    opts = TrainOptions(g_lr=0.001, d_lr=0.001, pl_weight=0.0, bf16=False, augment=("color", "translation"))
    text = run_segment(opts, data="faces", n_train=100, n_held=2, nimg=356800)
    assert text == ("trained by models.train on faces (100 images, 2 held out by name hash) to 356,800 images "
                    "(fp32, batch 32, lr 0.001, R1 gamma 0.1, path-length weight 0, EMA half-life 10 kimg, "
                    "style mixing 0.5, DiffAugment color+translation)")
    # A hand-built run with different G and D rates must not read as one rate.
    both = run_segment(dataclasses.replace(opts, d_lr=0.002, ema_kimg=20.0), data="faces", n_train=100, n_held=2,
                       nimg=1)
    assert "lr G 0.001 D 0.002," in both and "EMA half-life 20 kimg" in both


def test_ema_and_style_mixing_options_reach_the_run_and_its_provenance(tmp_path):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["--data", str(data), "--batch", "4", "--no-bf16", "--holdout", "0", "--channel-base", "256",
                 "--channel-max", "16", "--z-dim", "16", "--kimg", "0.004", "--ema-kimg", "20", "--style-mixing", "0",
                 "--out", str(out), "--export", str(out / "m.safetensors")]) == 0
    saved = torch.load(out / "state.pt", weights_only=True)["opts"]
    assert saved["ema_kimg"] == 20.0 and saved["style_mixing"] == 0.0
    provenance = json.loads((out / "m.json").read_text())["provenance"]
    assert "EMA half-life 20 kimg" in provenance and "style mixing 0," in provenance


def test_mapping_layers_option_builds_a_new_network_that_deep_and_resumes_it(tmp_path):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    common = ["--data", str(data), "--batch", "4", "--no-bf16", "--holdout", "0", "--channel-base", "256",
              "--channel-max", "16", "--z-dim", "16", "--out", str(out), "--export", str(out / "m.safetensors")]
    assert main(common + ["--kimg", "0.004", "--mapping-layers", "5"]) == 0
    model = models.load_model(out / "m.safetensors")
    assert model.G.mapping.num_layers == 5 and hasattr(model.G.mapping, "fc4")
    assert main(common + ["--kimg", "0.008", "--resume", str(out / "state.pt")]) == 0
    assert models.load_model(out / "m.safetensors").G.mapping.num_layers == 5
    assert models.load_model(out / "m.safetensors").config.images_seen == 8
    with pytest.raises(SystemExit):
        main(common + ["--kimg", "0.008", "--resume-model", str(out / "m.safetensors"), "--mapping-layers", "8"])


@pytest.mark.parametrize("ema_kimg", [10.0, 20.0])
def test_g_ema_moves_towards_g_by_the_half_life_fraction(ema_kimg):
    t = tiny_trainer(ema_kimg=ema_kimg)
    t.nimg = 10**7  # past the ramp-up, so the half-life is ema_kimg itself
    with torch.no_grad():
        for p, p_ema in zip(t.G.parameters(), t.G_ema.parameters()):
            p.fill_(1.0)
            p_ema.zero_()
    t._update_ema()
    moved = 1 - 0.5 ** (4 / (ema_kimg * 1000))
    for p in t.G_ema.parameters():
        assert torch.allclose(p, torch.full_like(p, moved), rtol=1e-4)


def _export_then_widen(tmp_path, channel_max: str, widen: list[str]):
    """(first export, widened export, common args): a tiny model trained 4 images, then resumed with `widen`.

    The resume asks for as many images as the model has seen: no step runs, so its export is the widened model
    untrained."""
    data = _image_folder(tmp_path / "data")
    common = ["--data", str(data), "--batch", "4", "--no-bf16", "--holdout", "0", "--channel-base", "256",
              "--channel-max", channel_max, "--z-dim", "16"]
    first = tmp_path / "first.safetensors"
    assert main(common + ["--kimg", "0.004", "--out", str(tmp_path / "a"), "--export", str(first)]) == 0
    wide = tmp_path / "wide.safetensors"
    assert main(common + ["--kimg", "0.004", "--out", str(tmp_path / "b"), "--export", str(wide),
                          "--resume-model", str(first)] + widen) == 0
    return first, wide, common


def test_resume_model_widened_exports_the_same_images_at_a_larger_width(tmp_path):
    first, wide, common = _export_then_widen(tmp_path, "16", ["--widen-channel-base", "1024",
                                                              "--widen-channel-max", "32"])
    old, new = models.load_model(first), models.load_model(wide)
    assert new.config.g_kwargs["synthesis_kwargs"] == {"channel_base": 1024, "channel_max": 32}
    assert "widened to channel_base 1024 / channel_max 32" in new.config.provenance
    assert new.G.synthesis.b64.conv1.weight.shape[0] == 16 > old.G.synthesis.b64.conv1.weight.shape[0]
    z = torch.randn(3, 16)
    ref = old.G(z, noise_mode="const")
    assert torch.allclose(new.G(z, noise_mode="const"), ref, atol=2e-3 * ref.abs().max().item())
    with pytest.raises(SystemExit):
        main(common + ["--kimg", "0.004", "--out", str(tmp_path / "c"), "--widen-channel-base", "1024"])


def test_resume_model_widens_single_blocks_and_the_export_reloads_at_that_width(tmp_path):
    first, wide, common = _export_then_widen(tmp_path, "16", ["--widen-block", "4:32", "8:24"])
    old, new = models.load_model(first), models.load_model(wide)  # the JSON round trip rebuilds the wide blocks
    assert new.config.g_kwargs["synthesis_kwargs"]["channels_by_res"] == {"4": 32, "8": 24}
    assert "4 px block 32, 8 px block 24" in new.config.provenance
    assert [b.conv1.weight.shape[0] for b in new.G.synthesis.blocks()] == [32, 24, 16, 8, 4]
    assert [b.conv1.weight.shape[0] for b in old.G.synthesis.blocks()] == [16, 16, 16, 8, 4]
    z = torch.randn(3, 16)
    ref = old.G(z, noise_mode="const")
    assert torch.allclose(new.G(z, noise_mode="const"), ref, atol=2e-3 * ref.abs().max().item())
    with pytest.raises(SystemExit):
        main(common + ["--kimg", "0.004", "--out", str(tmp_path / "c"), "--resume-model", str(first),
                       "--widen-block", "8-24"])


def test_resume_model_with_a_widened_discriminator_exports_the_same_logits_and_generator(tmp_path):
    first, wide, common = _export_then_widen(tmp_path, "64", ["--widen-d-channel-base", "1024"])
    _, G_old, D_old = load_native(first)
    config, G_new, D_new = load_native(wide)
    assert config.d_kwargs["channel_base"] == 1024
    assert config.g_kwargs == models.load_model(first).config.g_kwargs  # the generator keeps its width
    assert "discriminator widened to channel_base 1024 / channel_max 64" in config.provenance
    assert D_new.b64.conv0.weight.shape[0] == 16 > D_old.b64.conv0.weight.shape[0]
    img = torch.rand(4, 3, 64, 64) * 2 - 1
    ref = D_old.float()(img)
    assert torch.allclose(D_new.float()(img), ref, atol=2e-3 * ref.abs().max().item())
    z = torch.randn(2, 16)
    assert torch.equal(G_new(z, noise_mode="const"), G_old(z, noise_mode="const"))
    with pytest.raises(SystemExit):
        main(common + ["--kimg", "0.004", "--out", str(tmp_path / "c"), "--widen-d-channel-base", "1024"])


def test_lr_option_sets_both_optimisers_and_wins_over_a_resumed_state(tmp_path):
    data = _image_folder(tmp_path / "data")
    common = ["--data", str(data), "--batch", "4", "--no-bf16", "--holdout", "0", "--channel-base", "256",
              "--channel-max", "16", "--z-dim", "16", "--out", str(tmp_path / "run")]

    def saved_lrs():
        s = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
        return s["opt_G"]["param_groups"][0]["lr"], s["opt_D"]["param_groups"][0]["lr"]

    assert main(common + ["--kimg", "0.004"]) == 0
    g0, d0 = saved_lrs()
    assert g0 == pytest.approx(TrainOptions.g_lr)
    assert main(common + ["--kimg", "0.008", "--lr", "0.001", "--resume", str(tmp_path / "run" / "state.pt")]) == 0
    g1, d1 = saved_lrs()
    # D's rate carries the lazy-R1 correction r = 16/17 in both runs.
    assert g1 == pytest.approx(0.001) and d1 / g1 == pytest.approx(d0 / g0)


def test_mapping_lr_scale_gives_the_mapping_its_own_rate_through_a_resume(tmp_path):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    common = ["--data", str(data), "--batch", "4", "--no-bf16", "--holdout", "0", "--channel-base", "256",
              "--channel-max", "16", "--z-dim", "16", "--mapping-lr-scale", "10", "--out", str(out),
              "--export", str(out / "m.safetensors")]

    def mapping_and_rest():
        groups = torch.load(out / "state.pt", weights_only=True)["opt_G"]["param_groups"]
        return [(len(g["params"]), g["lr"]) for g in groups]

    assert main(common + ["--kimg", "0.004", "--lr", "0.001"]) == 0
    n_mapping = len(list(models.load_model(out / "m.safetensors").G.mapping.parameters()))
    (n0, lr0), (_, lr1) = mapping_and_rest()
    assert n0 == n_mapping and lr0 == pytest.approx(0.01) and lr1 == pytest.approx(0.001)
    assert "mapping lr x10" in json.loads((out / "m.json").read_text())["provenance"]
    # A resume reapplies the scale to this run's --lr instead of keeping one rate for every group.
    assert main(common + ["--kimg", "0.008", "--lr", "0.0005", "--resume", str(out / "state.pt")]) == 0
    assert [lr for _, lr in mapping_and_rest()] == pytest.approx([0.005, 0.0005])
    with pytest.raises(SystemExit):
        main(common + ["--kimg", "0.004", "--arch", "dcgan"])


def test_mapping_lr_scale_moves_the_mapping_faster_than_the_default():
    moved = []
    for scale in (1.0, 10.0):
        t = tiny_trainer(mapping_lr_scale=scale, pl_weight=0.0)
        before = [p.detach().clone() for p in t.G.mapping.parameters()]
        t.step()
        moved.append(sum(float((p - b).abs().sum()) for p, b in zip(t.G.mapping.parameters(), before)))
    assert moved[1] > 5 * moved[0] > 0


def test_lr_factor_holds_then_falls_on_a_half_cosine_to_zero_at_kimg():
    f = [lr_factor(n, kimg=10, rampdown_kimg=4) for n in (0, 5999, 6000, 8000, 10000, 12000)]
    assert f == pytest.approx([1, 1, 1, 0.5, 0, 0])
    assert lr_factor(9000, kimg=10, rampdown_kimg=0) == 1.0


def test_lr_rampdown_lowers_both_rates_as_the_run_nears_its_end():
    t = tiny_trainer(lr_rampdown_kimg=8, kimg=12, pl_weight=0.0)
    g0, d0 = t.opt_G.param_groups[0]["lr"], t.opt_D.param_groups[0]["lr"]
    t.nimg = 8000  # half way down
    t.step()
    assert t.opt_G.param_groups[0]["lr"] == pytest.approx(g0 / 2)
    assert t.opt_D.param_groups[0]["lr"] == pytest.approx(d0 / 2)
    t.nimg = 12000  # at kimg the rate is 0, so the weights stay where they are
    before = [p.detach().clone() for p in t.G.parameters()]
    t.step()
    assert all(torch.equal(p, b) for p, b in zip(t.G.parameters(), before))
    with pytest.raises(SystemExit):
        main(["--data", "x", "--out", "y", "--lr-rampdown-kimg", "-1"])


def test_sample_batch_draws_whole_images_some_flipped():
    images = torch.arange(6 * 3 * 4 * 4, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(6, 3, 4, 4)
    x = sample_batch(images, 64, xflip=True, gen=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert x.shape == (64, 3, 4, 4) and x.dtype == torch.float32 and -1 <= float(x.min()) <= float(x.max()) <= 1
    as_uint8 = ((x + 1) * 127.5).round().to(torch.uint8)
    plain = [any(torch.equal(b, im) for im in images) for b in as_uint8]
    flipped = [any(torch.equal(b, im.flip(2)) for im in images) for b in as_uint8]
    assert all(p or f for p, f in zip(plain, flipped)) and any(flipped) and any(plain)


def test_a_non_finite_loss_stops_the_run_without_saving(tmp_path, monkeypatch):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    real_step = Trainer.step

    def bad_step(self):
        losses = real_step(self)
        return {**losses, "d": torch.tensor(float("nan"))}

    monkeypatch.setattr(Trainer, "step", bad_step)
    assert main(["--data", str(data), "--batch", "4", "--no-bf16", "--holdout", "0", "--channel-base", "256",
                 "--channel-max", "16", "--z-dim", "16", "--kimg", "0.008", "--out", str(out),
                 "--export", str(out / "m.safetensors")]) == 1
    assert not (out / "state.pt").exists() and not (out / "m.safetensors").exists()


def test_sharpness_ranks_a_blurred_image_below_its_sharp_original():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    flat = np.full((64, 64, 3), 90, np.uint8)
    s = sharpness(torch.from_numpy(np.stack([sharp, blurred, flat])).permute(0, 3, 1, 2))
    assert s.shape == (3,) and s[0] > 10 * s[1] > 0 and s[2] == 0


def test_min_sharpness_leaves_out_blurred_training_images_and_says_so(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):  # noise: sharp
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data / f"s{i}.png")
    for i in range(3):  # flat: sharpness 0
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(data / f"f{i}.png")
    args = ["--data", str(data), "--arch", "dcgan", "--kimg", "0.004", "--batch", "4", "--out", str(tmp_path / "run"),
            "--export", str(tmp_path / "m.safetensors"), "--no-bf16", "--holdout", "0", "--min-sharpness", "1"]
    with caplog.at_level(logging.INFO, logger="models.train"):
        assert main(args) == 0
    assert "left out 3 of 9 training images with sharpness under 1" in caplog.text
    prov = models.load_model(tmp_path / "m.safetensors").config.provenance
    assert "(9 images, the 3 with sharpness (variance of the Laplacian at 64 px) under 1 left out" in prov
    # a threshold no image reaches is refused, not trained on nothing
    with pytest.raises(SystemExit, match="every training image"):
        main(args[:-1] + ["1e9"])
