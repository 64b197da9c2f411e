"""One visitor's runs through gradio_client (tiny model; a 5 ms heartbeat so that every run streams ticks, the
`gr.skip()` outputs yielded between frames): Gradio's record of that visitor's UI (its SessionState: blocks
and their configs) and the number of `gr.Image` objects in the server stay the same however many runs the
visitor makes (app.gradio_fixes.keep_update_ids). Counts, never time."""
from __future__ import annotations

import gc

import gradio as gr
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from app.gradio_fixes import keep_update_ids  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.app_server import TINY, env, free_port, one_torch_thread, running_app, save_png, two_tone, \
    write_tiny_models  # noqa: E402

SKIP = {"__type__": "update"}


@pytest.fixture(scope="module")
def ticking_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ticks")
    models_dir = write_tiny_models(tmp / "models")
    settings = Settings(temp_dir=tmp / "lb", port=free_port(), concurrency=1, max_steps=50, time_limit=60,
                        heartbeat_s=0.005)
    with env(LATENTBRUSH_MODELS=str(models_dir), GRADIO_ANALYTICS_ENABLED="False",
             GRADIO_TEMP_DIR=str(tmp / "gradio")), one_torch_thread(), running_app(settings) as (url, demo, _h):
        yield url, demo, str(save_png(tmp / "photo.png", two_tone()))


def _runs(client: Client, photo: str, n: int, first_seed: int) -> int:
    """n runs of 30 steps, a frame every 10; returns how many ticks were streamed."""
    ticks = 0
    for k in range(first_seed, first_seed + n):
        job = client.submit(image=handle_file(photo), align_face=False, model=TINY, steps=30, preview_every=10,
                            seed=k, api_name="/reconstruct")
        for _ in job:
            pass
        ticks += sum(1 for out in job.outputs() if out and out[1] == SKIP)
    return ticks


def _session(demo, client: Client):
    return demo.state_holder.session_data[client.session_hash]


def _images() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is gr.Image)


def test_skipped_outputs_do_not_grow_the_visitors_session(ticking_app):
    url, demo, photo = ticking_app
    client = Client(url, verbose=False, download_files=False)
    try:
        _runs(client, photo, 2, 0)
        state = _session(demo, client)
        blocks, configs, images = len(state.blocks_config.blocks), len(state.config_values), _images()
        ticks = _runs(client, photo, 8, 2)
        assert ticks >= 3, "the runs streamed no ticks: nothing here exercises gr.skip()"
        state = _session(demo, client)
        # Without the fix each skip -> value transition of an output adds a component and its config here.
        assert len(state.blocks_config.blocks) == blocks == len(demo.blocks)
        assert len(state.config_values) == configs
        assert _images() <= images
        # The outputs the session holds are still the UI's: every block at its own id.
        assert all(b._id == k for k, b in state.blocks_config.blocks.items())
    finally:
        client.close()


def test_keep_update_ids_installs_once():
    keep_update_ids()
    assert keep_update_ids() is False
