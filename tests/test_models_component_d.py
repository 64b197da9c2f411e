"""Facial-component critics: each reads only its own box, and their place in the trainer's step and state."""
import dataclasses
import logging

import numpy as np
import pytest
import torch

from models.component_d import COMPONENTS, ComponentDiscriminator, component_boxes
from models.train import Trainer, TrainOptions, make_config, run_segment


def test_boxes_cover_the_template_eyes_and_mouth_at_64_px():
    boxes = dict(component_boxes(64))
    assert set(boxes) == {name for name, _ in COMPONENTS} == {"eyes", "mouth"}
    # assets/face_template.json at 64 px: eye landmarks x 14-49, y 17-21; mouth x 20-43, y 42-51.
    x0, y0, x1, y1 = boxes["eyes"]
    assert x0 <= 14 and x1 >= 49 and y0 <= 17 and y1 >= 21
    x0, y0, x1, y1 = boxes["mouth"]
    assert x0 <= 20 and x1 >= 43 and y0 <= 42 and y1 >= 51
    with pytest.raises(ValueError, match="multiples of 4"):
        component_boxes(40)


def test_each_head_reads_only_its_box():
    torch.manual_seed(0)
    cd = ComponentDiscriminator(64)
    x = (torch.rand(4, 3, 64, 64) * 2 - 1).requires_grad_(True)
    logits = cd(x)
    assert logits.shape == (4, 2)
    for i, (name, (x0, y0, x1, y1)) in enumerate(component_boxes(64)):
        (grad,) = torch.autograd.grad(logits[:, i].sum(), x, retain_graph=True)
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert grad[..., inside].abs().sum() > 0, name
        assert grad[..., ~inside].abs().sum() == 0, name
    with pytest.raises(ValueError, match="64 px"):
        cd(torch.zeros(1, 3, 32, 32))


def _images(n=8, r=64):
    return torch.from_numpy(np.random.default_rng(0).integers(0, 255, (n, 3, r, r), dtype=np.uint8))


def _trainer(weight, **kw):
    opts = TrainOptions(batch=4, channel_base=256, channel_max=16, z_dim=16, bf16=False, pl_weight=0.0,
                        component_d_weight=weight, **kw)
    return Trainer(opts, make_config(opts, data_name="random"), _images(), torch.device("cpu"))


def test_step_trains_the_critics_with_r1_and_pulls_g_by_their_loss():
    with_cd, without = _trainer(1.0), _trainer(0.0)
    assert without.CD is None and without.critics == []
    before = {k: v.clone() for k, v in with_cd.CD.state_dict().items()}
    losses = with_cd.step()  # step 0 is an R1 step
    without.step()
    assert {"cd_g", "cd_d"} <= set(losses) and all(bool(torch.isfinite(v)) for v in losses.values())
    assert any(not torch.equal(before[k], v) for k, v in with_cd.CD.state_dict().items())
    # Same seed, same batches: only the component term can make G's first update differ.
    assert any(not torch.equal(a, b) for a, b in zip(with_cd.G.parameters(), without.G.parameters()))
    # Lazy R1, as for D: the critics' rate is scaled by interval / (interval + 1).
    r = with_cd.opts.r1_interval / (with_cd.opts.r1_interval + 1)
    assert with_cd.CD is with_cd.critics[0].net
    assert with_cd.critics[0].opt.param_groups[0]["lr"] == pytest.approx(with_cd.opts.d_lr * r)


def test_r1_reaches_the_critics_only_on_r1_steps():
    def grads_after_step(gamma):
        t = _trainer(1.0, r1_gamma=gamma)
        captured = {}
        opt = t.critics[0].opt
        orig = opt.step

        def step(*a, **k):
            captured["g"] = [p.grad.clone() for p in t.CD.parameters()]
            return orig(*a, **k)
        opt.step = step
        t.step()
        return captured["g"]

    with_r1, without_r1 = grads_after_step(10.0), grads_after_step(0.0)
    assert any(not torch.allclose(a, b) for a, b in zip(with_r1, without_r1))


def test_state_round_trip_keeps_the_critics_and_a_state_without_them_starts_fresh(caplog):
    t = _trainer(0.5)
    t.step()
    s = t.state()
    assert {"CD", "opt_CD"} <= set(s)
    t2 = _trainer(0.5)
    t2.load_state(s)
    assert all(torch.equal(a, b) for a, b in zip(t.CD.state_dict().values(), t2.CD.state_dict().values()))
    plain = _trainer(0.0)
    plain.step()
    t3 = _trainer(0.5)
    fresh = {k: v.clone() for k, v in t3.CD.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="models.train"):
        t3.load_state(plain.state())
    assert "no CD" in caplog.text and t3.nimg == 4
    assert all(torch.equal(fresh[k], v) for k, v in t3.CD.state_dict().items())


def test_provenance_names_the_component_critics_and_dcgan_refuses_them():
    opts = TrainOptions(bf16=False, component_d_weight=0.5)
    assert "component discriminators weight 0.5" in run_segment(opts, data="d", n_train=1, n_held=0, nimg=1)
    assert "component" not in run_segment(dataclasses.replace(opts, component_d_weight=0.0), data="d",
                                          n_train=1, n_held=0, nimg=1)
    dc = TrainOptions(arch="dcgan", component_d_weight=1.0, bf16=False)
    with pytest.raises(ValueError, match="StyleGAN2"):
        Trainer(dc, make_config(dc, data_name="random"), _images(), torch.device("cpu"))
