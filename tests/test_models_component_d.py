"""Facial-component critics: each reads only its own box, and their place in the trainer's step and state."""
import pytest
import torch

from models.component_d import COMPONENTS, ComponentDiscriminator, component_boxes
from tests.tiny import tiny_trainer


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


def _trainer(weight, **kw):
    return tiny_trainer(component_d_weight=weight, **kw)


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
