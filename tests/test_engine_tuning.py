"""Pivotal tuning (engine/tuning.py): improves the fit, never changes the shared model, frees its copy on Stop,
keeps an inpainting hole the generator's invention, and its weight deltas restore the result."""
from __future__ import annotations

import gc
import threading
import types
import weakref

import numpy as np
import pytest
import torch

from engine import tuning
from engine.handle import start_run
from engine.inversion import run
from engine.metrics import psnr
from engine.tasks import request_for_task
from engine.types import EngineError, InversionConfig, InversionRequest, LossWeights, TuningConfig
from tests.engine_helpers import recoverable_model, target_from_latent


@pytest.fixture(scope="module")
def model():
    return recoverable_model()


@pytest.fixture(scope="module")
def foreign_target():
    """An image the model's latent space cannot reach exactly: made by another random generator."""
    return target_from_latent(recoverable_model(seed=5), seed=3)[0]


def _cfg(latent_steps: int = 30, tune_steps: int = 30, seed: int = 0, **tuning) -> InversionConfig:
    return InversionConfig(steps=latent_steps, preview_every=10, weights=LossWeights(l2=1.0, perceptual=0.3), seed=seed,
                           tuning=TuningConfig(steps=tune_steps, **{"lr": 3e-3, **tuning}))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def copies(monkeypatch) -> list[weakref.ref]:
    """Weak references to every generator copy the tuning stage makes."""
    made: list[weakref.ref] = []
    real = tuning.copy.deepcopy

    def recording(obj, *args, **kwargs):
        out = real(obj, *args, **kwargs)
        made.append(weakref.ref(out))
        return out

    monkeypatch.setattr(tuning, "copy", types.SimpleNamespace(deepcopy=recording))
    return made


def test_tuning_improves_the_fit_and_leaves_the_shared_model_alone(model, foreign_target):
    before = _state(model.G)
    frames = list(run(model, InversionRequest(target=foreign_target, config=_cfg())))
    stages = [(f.step, f.stage) for f in frames]
    assert stages == [(10, "latent"), (20, "latent"), (30, "latent"), (40, "tuning"), (50, "tuning"), (60, "tuning")]
    assert all(f.total == 60 for f in frames) and [f.done for f in frames] == [False] * 5 + [True]
    pivot, tuned = frames[2], frames[-1]
    assert psnr(foreign_target, tuned.image) > psnr(foreign_target, pivot.image) + 1.0
    assert torch.equal(tuned.latent, pivot.latent), "tuning keeps the pivot fixed"
    assert "locality" in tuned.losses and tuned.weight_deltas
    assert all(d.dtype == torch.float16 for d in tuned.weight_deltas.values())
    after = _state(model.G)
    assert all(torch.equal(before[k], after[k]) for k in before), "the shared generator changed"
    assert not any(p.requires_grad for p in model.G.parameters())


def test_tuning_off_is_the_plain_latent_search(model, foreign_target):
    frames = list(run(model, InversionRequest(target=foreign_target, config=_cfg(tune_steps=0))))
    assert frames[-1].done and frames[-1].step == 30 and {f.stage for f in frames} == {"latent"}
    assert frames[-1].weight_deltas is None


def test_weight_deltas_restore_the_tuned_result(model, foreign_target):
    final = list(run(model, InversionRequest(target=foreign_target, config=_cfg())))[-1]
    synth = tuning.tuned_synthesis(model.G, final.weight_deltas)
    with torch.no_grad():
        img = synth(final.latent[None], noise_mode="const")
    restored = ((img[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(restored - final.image.astype(np.int16)).max() <= 2  # fp16 deltas
    untuned = ((model.G.synthesis(final.latent[None], noise_mode="const")[0].clamp(-1, 1) + 1) * 127.5)
    assert np.abs(untuned.round().permute(1, 2, 0).numpy() - final.image).mean() > 1.0
    with pytest.raises(EngineError, match="does not fit"):
        tuning.tuned_synthesis(model.G, {"no.such.weight": torch.zeros(1)})


def test_stop_during_tuning_frees_the_copy(model, foreign_target, copies):
    stop = threading.Event()
    it = run(model, InversionRequest(target=foreign_target, config=_cfg(tune_steps=200)), stop=stop)
    frames = []
    for f in it:
        frames.append(f)
        if f.stage == "tuning":
            assert len(copies) == 1 and copies[0]() is not None
            stop.set()
    assert frames[-1].stage == "tuning" and not frames[-1].done and frames[-1].step < 230
    gc.collect()
    assert copies[0]() is None, "the tuned copy outlived the stopped run"


def test_closing_the_iterator_during_tuning_frees_the_copy(model, foreign_target, copies):
    it = run(model, InversionRequest(target=foreign_target, config=_cfg(tune_steps=200)))
    for f in it:
        if f.stage == "tuning":
            break
    assert copies[0]() is not None
    it.close()
    del it, f
    gc.collect()
    assert copies[0]() is None


def test_cancelled_handle_frees_the_copy(model, foreign_target, copies):
    handle = start_run(model, InversionRequest(target=foreign_target, config=_cfg(tune_steps=2000)))
    while (f := handle.wait(30)) is None or f.stage != "tuning":
        pass
    handle.cancel()
    with pytest.raises(StopIteration):
        while True:
            handle.wait(30)
    del f
    gc.collect()
    assert copies and copies[0]() is None


def test_inpaint_tuning_keeps_the_hole_the_generators_invention(model):
    """Known pixels: a photo-like G image whose surroundings are pushed to a saturated colour; the hole (centre)
    must stay near the untuned G(pivot) there and not drift towards the surrounding colour."""
    target, _ = target_from_latent(recoverable_model(seed=7), seed=2)
    target = target.copy()
    target[..., 0] = 250  # strong red everywhere the loss can see: tuning that leaks would redden the hole
    hole = np.zeros((32, 32), bool)
    hole[10:22, 10:22] = True
    req = request_for_task("inpaint", target, painted=hole, config=_cfg(latent_steps=40, tune_steps=60))
    frames = list(run(model, req))
    pivot = next(f for f in frames if f.step == 40).image.astype(np.float32)
    tuned = frames[-1].image.astype(np.float32)
    known = ~hole
    ring = np.zeros_like(hole)
    ring[6:26, 6:26] = True
    ring &= known
    surround = target[ring].astype(np.float32).mean(axis=0)
    # Tuning fits the known pixels better...
    err = lambda img: np.abs(img[known] - target[known]).mean()  # noqa: E731
    assert err(tuned) < err(pivot) - 1.0
    # ...while the hole stays the untuned generator's, not the surroundings' colour.
    drift = np.abs(tuned[hole] - pivot[hole]).mean()
    towards = np.abs(pivot[hole] - surround).mean() - np.abs(tuned[hole] - surround).mean()
    assert drift < 0.5 * np.abs(pivot[hole] - surround).mean()
    assert towards < 3.0, f"tuning pulled the hole {towards:.1f} levels towards the surrounding colour"


def test_tuning_options_are_validated():
    with pytest.raises(EngineError, match="tuning steps"):
        _cfg(tune_steps=-1).validate()
    with pytest.raises(EngineError, match="tuning learning rate"):
        _cfg(lr=0.0).validate()
    with pytest.raises(EngineError, match="tuning locality"):
        _cfg(locality=float("nan")).validate()
    _cfg().validate()


def test_locality_codes_sit_at_the_given_distance():
    pivot = torch.randn(1, 4, 8)
    samples = torch.randn(5, 4, 8) * 10
    ws = tuning.locality_ws(pivot, samples, distance=2.5)
    assert torch.allclose((ws - pivot).norm(dim=-1), torch.full((5, 4), 2.5), atol=1e-5)
    assert torch.all(((ws - pivot) * (samples - pivot)).sum(-1) > 0), "moved towards the samples"


# ------------------------------------------------------------------------------------- batched engine

def test_batched_tuned_run_leaves_the_batch_and_slots_bound_concurrency(model, foreign_target, monkeypatch):
    from engine import batched
    from engine.batched import BatchedEngine
    live, peak, lock = [0], [0], threading.Lock()
    real_tune = batched.tune

    def counting_tune(*args, **kwargs):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        try:
            yield from real_tune(*args, **kwargs)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(batched, "tune", counting_tune)
    eng = BatchedEngine(model, workers=1, tune_slots=1)
    try:
        tuned = [eng.start(InversionRequest(target=foreign_target, config=_cfg(tune_steps=20, seed=s)))
                 for s in (0, 1)]
        plain = eng.start(InversionRequest(target=foreign_target, config=_cfg(tune_steps=0)))
        results = [list(h) for h in tuned + [plain]]
    finally:
        eng.close()
    for frames in results[:2]:
        assert [f.stage for f in frames][-2:] == ["tuning", "tuning"] and frames[-1].done
        assert frames[-1].step == 50 and frames[-1].weight_deltas
    assert results[2][-1].done and results[2][-1].step == 30 and results[2][-1].stage == "latent"
    assert peak[0] == 1, "more tuning stages ran at once than the engine's slots"
    assert eng.active_runs == 0


def test_batched_cancel_during_tuning_frees_the_copy(model, foreign_target, copies):
    from engine.batched import BatchedEngine
    eng = BatchedEngine(model, workers=1)
    try:
        handle = eng.start(InversionRequest(target=foreign_target, config=_cfg(tune_steps=2000)))
        while (f := handle.wait(30)) is None or f.stage != "tuning":
            pass
        assert copies[0]() is not None
        handle.cancel()
        with pytest.raises(StopIteration):
            while True:
                handle.wait(30)
        del f
        for _ in range(50):  # the tuning thread drops the run right after its DONE
            gc.collect()
            if copies[0]() is None and eng.active_runs == 0:
                break
            threading.Event().wait(0.05)
        assert copies[0]() is None, "the tuned copy outlived the cancelled run"
        assert eng.active_runs == 0
    finally:
        eng.close()
