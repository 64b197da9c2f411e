"""What the trainer's extra discriminators (`models.train.Critic`) share: state round trip, provenance, StyleGAN2 only."""
import dataclasses
import logging

import pytest
import torch

from models.train import TrainOptions, run_segment
from tests.tiny import tiny_trainer

# (Trainer attribute and state key, TrainOptions weight, what the provenance calls it)
CRITICS = [("FD", "feature_d_weight", "feature discriminator weight"),
           ("CD", "component_d_weight", "component discriminators weight")]


@pytest.mark.parametrize("key,option,_", CRITICS)
def test_state_round_trip_keeps_the_critic_and_a_state_without_it_starts_fresh(key, option, _, caplog):
    t = tiny_trainer(**{option: 0.5})
    t.step()
    s = t.state()
    assert {key, f"opt_{key}"} <= set(s)
    t2 = tiny_trainer(**{option: 0.5})
    t2.load_state(s)
    net, net2 = getattr(t, key), getattr(t2, key)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    assert t2.critics[0].opt.state_dict()["state"].keys() == t.critics[0].opt.state_dict()["state"].keys()
    plain = tiny_trainer(**{option: 0.0})
    plain.step()
    t3 = tiny_trainer(**{option: 0.5})
    fresh = {k: v.clone() for k, v in getattr(t3, key).state_dict().items()}
    with caplog.at_level(logging.INFO, logger="models.train"):
        t3.load_state(plain.state())
    assert f"no {key}" in caplog.text and "start fresh" in caplog.text and t3.nimg == 4
    assert all(torch.equal(fresh[k], v) for k, v in getattr(t3, key).state_dict().items())


@pytest.mark.parametrize("key,option,named", CRITICS)
def test_provenance_names_the_critic_and_dcgan_refuses_it(key, option, named):
    opts = TrainOptions(bf16=False, **{option: 0.5})
    assert f"{named} 0.5" in run_segment(opts, data="d", n_train=1, n_held=0, nimg=1)
    assert named not in run_segment(dataclasses.replace(opts, **{option: 0.0}), data="d", n_train=1, n_held=0,
                                    nimg=1)
    with pytest.raises(ValueError, match="StyleGAN2"):
        tiny_trainer(arch="dcgan", **{option: 1.0})
