"""Batched multi-run engine: stacked runs give each run its own result; join/leave; cancel one run."""
import threading
import time

import numpy as np
import pytest
import torch

from engine import InversionConfig, InversionRequest, LossWeights, OperatorSpec, run, start_run
from engine.batched import BatchedEngine
from tests.engine_helpers import recoverable_model, target_from_latent


@pytest.fixture(scope="module")
def model():
    return recoverable_model()


def _wait_idle(eng: BatchedEngine, timeout: float = 5.0) -> bool:
    """True once the engine holds no run (dropping a cancelled run happens on its worker thread)."""
    deadline = time.time() + timeout
    while eng.active_runs and time.time() < deadline:
        time.sleep(0.05)
    return eng.active_runs == 0


def _cfg(**kw):
    base = dict(steps=12, preview_every=4, initial_noise_factor=0.0, weights=LossWeights(l2=1.0, perceptual=0.3))
    base.update(kw)
    return InversionConfig(**base)


def test_batched_runs_match_single_runs(model):
    t1, _ = target_from_latent(model, seed=1)
    t2, _ = target_from_latent(model, seed=2)
    known = np.ones((32, 32), bool)
    known[8:20, 8:20] = False
    reqs = [InversionRequest(target=t1, config=_cfg()),
            InversionRequest(target=t2, operators=(OperatorSpec("mask"),), known=known, config=_cfg(lr=0.05, steps=8)),
            InversionRequest(target=t1, operators=(OperatorSpec("grayscale"),), config=_cfg(steps=16))]
    singles = [list(run(model, r)) for r in reqs]
    eng = BatchedEngine(model)
    try:
        iters = [eng.submit(r) for r in reqs]
        batched = [list(it) for it in iters]
    finally:
        eng.close()
    for s, b in zip(singles, batched):
        assert [f.step for f in s] == [f.step for f in b]
        assert b[-1].done
        # Same maths, different batch composition: equal up to float reduction order (which Adam's
        # sign-like first steps can amplify to ~1e-3 on near-zero gradient components).
        assert float((s[-1].latent - b[-1].latent).abs().max()) < 1e-2
        assert np.abs(s[-1].image.astype(int) - b[-1].image.astype(int)).max() <= 2


def test_cancelling_one_run_leaves_the_others(model):
    t1, _ = target_from_latent(model, seed=1)
    eng = BatchedEngine(model)
    try:
        long_run = eng.submit(InversionRequest(target=t1, config=_cfg(steps=4000, preview_every=1)))
        short = eng.submit(InversionRequest(target=t1, config=_cfg(steps=10, preview_every=5)))
        next(long_run)
        long_run.close()
        frames = list(short)
        assert frames[-1].done and frames[-1].step == 10
        assert _wait_idle(eng)
    finally:
        eng.close()


def test_bad_request_fails_at_submit(model):
    eng = BatchedEngine(model)
    try:
        with pytest.raises(Exception):
            eng.submit(InversionRequest(target=np.zeros((8, 8, 3), np.uint8)))
    finally:
        eng.close()


@pytest.mark.parametrize("batched", [False, True])
def test_a_handle_waits_with_a_timeout_and_cancels_between_frames(model, batched):
    """A run that streams rarely (one frame in 5000 steps) is cancelled at its next step, and a waiter
    blocked on it wakes up; `wait(timeout)` returns None while no frame has arrived."""
    t1, _ = target_from_latent(model, seed=1)
    req = InversionRequest(target=t1, config=_cfg(steps=5000, preview_every=5000))
    eng = BatchedEngine(model)
    try:
        handle = eng.start(req) if batched else start_run(model, req)
        assert handle.wait(0.2) is None
        woke = threading.Event()

        def waiter() -> None:
            try:
                handle.wait(None)
            except StopIteration:
                woke.set()
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        handle.cancel()
        t.join(timeout=30)
        assert woke.is_set(), "cancelling did not end the run"
        with pytest.raises(StopIteration):
            handle.wait(0)
        assert _wait_idle(eng)
    finally:
        eng.close()


def test_start_run_reports_engine_errors_to_the_waiter(model):
    t1, _ = target_from_latent(model, seed=1)
    with pytest.raises(Exception, match="target"):
        start_run(model, InversionRequest(target=np.zeros((8, 8, 3), np.uint8)))
    handle = start_run(model, InversionRequest(target=t1, config=_cfg(lr=1e30, steps=50, preview_every=1)))
    with pytest.raises(Exception, match="diverged|non-finite"):
        while True:
            handle.wait(30)


def test_two_lanes_share_the_runs_and_each_run_gets_its_own_result(model):
    t1, _ = target_from_latent(model, seed=1)
    t2, _ = target_from_latent(model, seed=2)
    reqs = [InversionRequest(target=t, config=_cfg(steps=60)) for t in (t1, t2, t1, t2)]
    singles = [list(run(model, r))[-1] for r in reqs[:2]]
    eng = BatchedEngine(model, workers=2)
    try:
        handles = [eng.start(r) for r in reqs]
        assert all(lane._thread is not None for lane in eng._lanes)  # runs went to both lanes
        finals = [list(h)[-1] for h in handles]
    finally:
        eng.close()
    for i, f in enumerate(finals):
        # Equal up to float reduction order, which 60 Adam steps amplify a little (see the test above).
        assert f.done and float((f.latent - singles[i % 2].latent).abs().max()) < 0.05
        assert np.abs(f.image.astype(int) - singles[i % 2].image.astype(int)).max() <= 4
    with pytest.raises(ValueError):
        BatchedEngine(model, workers=0)
