"""The CLI and the gallery take the same config overrides from one place (engine.config_args)."""
import dataclasses

import pytest

from engine import cli, gallery
from engine.config_args import WEIGHT_OPTIONS
from engine.tasks import default_config
from engine.types import EngineError, LossWeights


def test_every_loss_weight_has_an_option():
    assert {name for name, _ in WEIGHT_OPTIONS} == {f.name for f in dataclasses.fields(LossWeights)}


def _weight_flags() -> list[str]:
    flags = []
    for i, (name, _) in enumerate(WEIGHT_OPTIONS):
        flags += ["--" + name.replace("_", "-"), str(0.25 + i)]
    return flags


def test_cli_and_gallery_apply_the_same_overrides():
    extra = _weight_flags() + ["--steps", "7", "--lr", "0.02", "--latent-space", "w", "--perceptual-net", "none",
                               "--init", "best-of-k", "--num-starts", "5", "--start-psi", "0.6", "--optimize-noise",
                               "--tune-steps", "3", "--tune-lr", "0.002"]
    ca = cli.build_parser().parse_args(["inpaint", "--input", "x.png", "--out", "o"] + extra)
    ga = gallery.build_parser().parse_args(["--model", "m", "--out", "o"] + extra)
    c = cli._config(ca, "inpaint", "stylegan2")
    g = gallery.config_for("inpaint", "stylegan2", ga)
    for i, (name, _) in enumerate(WEIGHT_OPTIONS):
        assert getattr(c.weights, name) == getattr(g.weights, name) == 0.25 + i
    for cfg in (c, g):
        assert (cfg.steps, cfg.lr, cfg.latent_space, cfg.perceptual, cfg.init) == (7, 0.02, "w", "none", "best-of-k")
        assert cfg.optimize_noise and cfg.tuning.steps == 3 and cfg.tuning.lr == 0.002
        assert (cfg.num_starts, cfg.start_psi) == (5, 0.6)
    assert g.preview_every == 7


def test_no_options_keep_the_task_defaults():
    ga = gallery.build_parser().parse_args(["--model", "m", "--out", "o"])
    cfg = gallery.config_for("colorize", "stylegan2", ga)
    assert cfg.replace(preview_every=0) == default_config("colorize", arch="stylegan2").replace(preview_every=0)


@pytest.mark.parametrize("flag, value", [("--layer-spread", "-1"), ("--noise-reg", "nan"), ("--l1", "inf")])
def test_bad_weights_are_refused_by_name(flag, value):
    ga = gallery.build_parser().parse_args(["--model", "m", "--out", "o", flag, value])
    with pytest.raises(EngineError, match=flag):
        gallery.config_for("reconstruct", "stylegan2", ga)


def test_tuning_is_refused_for_scribble():
    ca = cli.build_parser().parse_args(["scribble", "--input", "x.png", "--out", "o", "--tune-steps", "5"])
    with pytest.raises(EngineError, match="--tune-steps"):
        cli._config(ca, "scribble", "stylegan2")


def test_model_task_defaults_apply_under_the_options():
    """A model's task overrides replace the engine's defaults for that task only; options given still win."""
    overrides = {"deblur": {"latent_space": "w", "perceptual": "discriminator", "weights": {"latent_dist": 1.0}}}
    base = default_config("deblur")
    own = default_config("deblur", overrides=overrides)
    assert (own.latent_space, own.weights.latent_dist, own.perceptual) == ("w", 1.0, "discriminator")
    assert (base.latent_space, base.perceptual) == ("w+", "mobilenet")
    assert own.weights.l2 == base.weights.l2 and own.lr == base.lr
    assert default_config("superres", overrides=overrides) == default_config("superres")
    ga = gallery.build_parser().parse_args(["--model", "m", "--out", "o", "--latent-dist", "0.2"])
    g = gallery.config_for("deblur", "stylegan2", ga, overrides)
    assert (g.latent_space, g.weights.latent_dist) == ("w", 0.2)


def test_model_default_tuning_applies_and_options_override_it():
    """A model may tune by default (`tuning` in its task defaults); --tune-steps 0 turns it off, other tasks and the
    tuning options the model does not name keep the engine's."""
    overrides = {"reconstruct": {"tuning": {"steps": 50}}}
    own = default_config("reconstruct", overrides=overrides)
    assert own.tuning.steps == 50 and own.tuning.lr == default_config("reconstruct").tuning.lr
    assert own.total_steps == own.steps + 50
    assert default_config("superres", overrides=overrides).tuning.steps == 0
    ga = gallery.build_parser().parse_args(["--model", "m", "--out", "o"])
    assert gallery.config_for("reconstruct", "stylegan2", ga, overrides).tuning.steps == 50
    ga = gallery.build_parser().parse_args(["--model", "m", "--out", "o", "--tune-steps", "0"])
    assert gallery.config_for("reconstruct", "stylegan2", ga, overrides).tuning.steps == 0


@pytest.mark.parametrize("bad, words", [({"latent_dist": 1.0}, "latent_dist"),
                                        ({"weights": {"latent_distance": 1.0}}, "weights.latent_distance"),
                                        ({"latent_space": "q"}, "latent space"),
                                        ({"weights": {"latent_dist": -1.0}}, "latent_dist"),
                                        ({"weights": 1.0}, "weights must be a mapping"),
                                        ({"tuning": {"step": 5}}, "tuning.step"),
                                        ({"tuning": {"steps": -1}}, "tuning steps"),
                                        ({"tuning": 100}, "tuning must be a mapping"),
                                        ("w", "must be a mapping of setting names")])
def test_bad_model_task_defaults_fail_loudly(bad, words):
    with pytest.raises(EngineError, match=words) as err:
        default_config("deblur", overrides={"deblur": bad})
    assert "task_defaults['deblur']" in str(err.value)
