"""A model per task, in headless Chromium: the Model list starts on the cat model (Scribble), moves to the face
model when Inpaint is opened, and a face photo uploaded while a cat model is picked switches it to the face model.

The server maps cat=tinycat, face=tinyface (tiny random networks, tests/test_app_domains.py writes them).
"""
from __future__ import annotations

import pytest

from app.settings import EXAMPLES_DIR, Settings
from tests.app_server import env, free_port, one_torch_thread, running_app
from tests.test_app_domains import _face_detection_available, write_domain_models
from tests.test_browser import (ARGS, ARTIFACTS, CHROMIUM, drawing_area, record_statuses, seen, stroke,
                                wait_for_upload, wait_status)

sync_api = pytest.importorskip("playwright.sync_api")
FACE_PHOTO = EXAMPLES_DIR / "astronaut.png"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    folder = write_domain_models(tmp_path_factory.mktemp("domain-models"))
    settings = Settings(temp_dir=tmp_path_factory.mktemp("lbtmp"), port=free_port(), max_steps=5000, time_limit=60,
                        models=(("cat", "tinycat"), ("face", "tinyface")))
    with env(LATENTBRUSH_MODELS=str(folder), GRADIO_ANALYTICS_ENABLED="False"), one_torch_thread(), \
            running_app(settings) as (url, _, _handlers):
        yield url


@pytest.fixture
def page(app_url, request):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        ctx = browser.new_context(viewport={"width": 1000, "height": 1300})
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(app_url, wait_until="load")
        pg.wait_for_selector("#scribble-run")
        try:
            yield pg
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            browser.close()


def model_shown(page) -> str:
    return page.locator("#model input").first.input_value()


def wait_model(page, name: str) -> None:
    page.wait_for_function("(name) => { const i = document.querySelector('#model input');"
                           " return i && i.value.startsWith(name + ' '); }", arg=name, timeout=60_000)


def upload_face(page, tab: str) -> None:
    target = "#inpaint-canvas" if tab == "inpaint" else f"#{tab}-input"
    page.locator(f"{target} input[type=file]").first.set_input_files(str(FACE_PHOTO))


def test_opening_inpaint_with_a_face_photo_runs_the_face_model(page):
    assert model_shown(page).startswith("tinycat ")  # Scribble, the first tab, starts on the cat model
    page.get_by_role("tab", name="Inpaint").click()
    wait_model(page, "tinyface")
    upload_face(page, "inpaint")
    wait_for_upload(page, "inpaint-canvas")
    page.locator('#inpaint-canvas button[aria-label="Brush"]').click()
    box = drawing_area(page, "inpaint-canvas")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    s = box["height"] / 12
    stroke(page, [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)])
    record_statuses(page, "inpaint")
    page.locator("#inpaint-run").click()
    wait_status(page, "inpaint", "Done")
    statuses = seen(page)["status"]
    assert any("inpaint with tinyface" in s for s in statuses), statuses
    assert model_shown(page).startswith("tinyface ")
    page.get_by_role("tab", name="Scribble to image").click()
    wait_model(page, "tinycat")  # not picked by the visitor: the list follows the tab back


def wait_tuning(page, tab: str, steps: int) -> None:
    """Wait until the tab's 'Pivotal tuning steps' slider shows `steps` (a model's own default follows the model);
    opens the tab's Settings first (a closed accordion's contents are not in the page)."""
    if not page.locator(f"#{tab}-tune-steps").count():
        page.locator(f"#{tab}-settings .label-wrap").first.click()
    page.wait_for_function("([tab, steps]) => { const i = document.querySelector(`#${tab}-tune-steps input`);"
                           " return i && Number(i.value) === steps; }", arg=[tab, steps], timeout=60_000)


@pytest.mark.skipif(not _face_detection_available(), reason="dlib face detection is not installed")
def test_a_face_photo_switches_a_picked_cat_model_to_the_face_model(page):
    page.get_by_role("tab", name="Reconstruct").click()
    wait_model(page, "tinyface")
    wait_tuning(page, "reconstruct", 20)  # tinyface's own default
    page.locator("#model input").first.click()  # the visitor picks the cat model themselves
    page.locator('li[data-testid="dropdown-option"][aria-label^="tinycat "]').first.click()
    wait_model(page, "tinycat")
    wait_tuning(page, "reconstruct", 0)
    page.get_by_role("tab", name="Colorize").click()
    page.wait_for_timeout(1500)
    assert model_shown(page).startswith("tinycat ")  # a picked model stays when tabs change
    upload_face(page, "colorize")
    wait_model(page, "tinyface")  # dlib found the astronaut's face
    page.get_by_text("A face was found in your photo").first.wait_for(timeout=10_000)
