"""Layout and wiring only: `build_demo(settings) -> gr.Blocks`. Behaviour lives in `app.handlers`.

Named API endpoints (gradio_client): /scribble, /inpaint, /reconstruct, /colorize, /deblur, /superres,
/interpolate. Every other event is private. All inversions share one concurrency group ("inversion") so
at most `settings.concurrency` optimisations run at once, whatever the tab.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.tuning import TUNABLE_TASKS

from .gradio_fixes import forget_session, keep_update_ids, quiet_queue
from .controls import CONTROL_FIELDS, TUNING_TABS, control_defaults, defaults_key, tuning_default
from .domains import TAB_DOMAINS, ModelFollower, domain_model_for_example, model_for_tab
from .handlers import Handlers
from .inputs import CANVAS, INPAINT_BRUSH, INPAINT_BRUSH_OPACITY
from .model_cache import ModelInfo, describe, model_choices
from .session import delete_session
from .settings import Settings
from .tabs import PERCEPTUAL_NETS, TABS, user_error

log = logging.getLogger(__name__)

TITLE = "LatentBrush"
PALETTE = ["#000000", "#ffffff", "#7f4f24", "#c68b59", "#f2c48d", "#e0ac69", "#ff8c00", "#d62828", "#f4d35e",
           "#2a9d8f", "#4361ee", "#9d9d9d"]
CSS = """
.lb-pixels img { image-rendering: pixelated; }
.lb-status { min-height: 3em; }
"""
TAB_TITLES = {"scribble": "Scribble to image", "inpaint": "Inpaint", "reconstruct": "Reconstruct",
              "colorize": "Colorize", "deblur": "Deblur", "superres": "Super-resolve", "interpolate": "Interpolate"}
HELP = {
    "scribble": "Pick a colour (or the colour picker) and draw a few strokes: the model invents a picture whose "
                "pixels under your strokes have your colours. Only the drawn pixels count.",
    "inpaint": "Upload a photo (or click an example), paint over the region to fill in, press Run. The painted "
               "region is invented by the model, the rest is matched to your photo.",
    "reconstruct": "Upload a photo: the model searches for its closest picture. Face models align the face first "
                   "(they only know faces framed like their training photos); *Align face first* forces it on "
                   "other models. Other models see the square you choose under *The square the model sees*.",
    "colorize": "Upload a black-and-white (or colour) photo: only its brightness is matched; the colours come "
                "from the model.",
    "deblur": "Upload a blurred photo: the model searches for a sharp picture whose blurred version matches it. "
              "Tick *Blur my sharp photo first* to try it on a sharp photo.",
    "superres": "Upload a small photo: the model searches for a sharp picture whose reduced version matches it.",
    "interpolate": "Give two images (they are reconstructed first) or pick two earlier results of this session, "
                   "then watch the model morph from one to the other.",
}


def _friendly_preprocess(component: gr.components.Component, message: str) -> gr.components.Component:
    """Make the component's decoding failures a friendly gr.Error (uploads are then checked by app.uploads).

    Done on the instance on purpose: subclassing a Gradio component makes Gradio write a `.pyi` stub next
    to this module at import time.
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - trust boundary: no traceback for a bad upload
            log.info("upload refused by %s", type(component).__name__, exc_info=True)
            raise user_error(message) from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def PhotoInput(**kwargs: Any) -> gr.Image:  # noqa: N802 - reads like the component it builds
    """gr.Image whose undecodable uploads give a friendly error."""
    return _friendly_preprocess(gr.Image(**kwargs), "This file is not an image that can be read. Please upload a "
                                                    "PNG, JPEG, WebP, GIF, BMP or TIFF image.")


def Canvas(**kwargs: Any) -> gr.ImageEditor:  # noqa: N802
    """gr.ImageEditor whose undecodable pictures/layers give a friendly error."""
    return _friendly_preprocess(gr.ImageEditor(**kwargs), "The picture or one of its layers is not an image that "
                                                          "can be read. Please upload a PNG, JPEG or WebP image "
                                                          "and paint again.")


@dataclass
class TabOutputs:
    """The result panel every task tab shares (order = app.tabs' TAB_OUTPUTS)."""

    input_view: gr.Image
    result: gr.Image
    second: gr.Image
    loss: gr.Image
    status: gr.Markdown
    files: gr.File
    slider: gr.Slider
    continue_btn: gr.Button
    rewind_btn: gr.Button

    def outputs(self, session: gr.State) -> list:
        return [self.input_view, self.result, self.second, self.loss, self.status, self.files, self.slider,
                session]


def _examples_for(tab: str) -> list[list[str]]:
    """Example rows from app.examples (written by a colleague); [] when the module or files are missing."""
    try:
        return importlib.import_module("app.examples").examples_for(tab)
    except Exception:  # noqa: BLE001 - examples are optional
        log.info("no examples for %s", tab, exc_info=True)
        return []


def _suggested_model(settings: Settings):
    """Example click -> the server's model for the domain the example suits (or no change)."""
    def suggest(path, *_):
        try:
            name = importlib.import_module("app.examples").model_for_example(path)
        except Exception:  # noqa: BLE001
            name = None
        return domain_model_for_example(settings, name) or gr.skip()
    return suggest


def _face_align_info() -> str:
    if importlib.util.find_spec("app.face_align") is None:
        return "⚠ Face alignment is not installed here (app/face_align.py missing): photos are centre-cropped."
    return "Finds the face and warps it to the model's training framing (face models)."


def _controls(tab: str, settings: Settings, info: ModelInfo) -> list:
    d = control_defaults(tab, info.arch, info.task_defaults)
    tune_default = tuning_default(tab, info.arch, info.task_defaults)
    with gr.Accordion("Settings", open=False, elem_id=f"{tab}-settings"):
        with gr.Row():
            space = gr.Radio(["z", "w", "w+"], value=d.latent_space, label="Latent space",
                             info="w+: most faithful; w: stays closer to typical pictures; z: the raw input")
            steps = gr.Number(d.steps, precision=0, label="Steps", info=f"at most {settings.max_steps} here",
                              elem_id=f"{tab}-steps")
            lr = gr.Number(d.lr, label="Learning rate")
            optimizer = gr.Radio(["adam", "lbfgs"], value=d.optimizer, label="Optimiser")
        with gr.Row():
            l1 = gr.Number(d.l1, label="L1 weight")
            l2 = gr.Number(d.l2, label="L2 weight")
            perceptual = gr.Number(d.perceptual, label="Perceptual weight")
            net = gr.Dropdown(list(PERCEPTUAL_NETS), value=d.perceptual_net, label="Perceptual network",
                              info="discriminator: the model's own; mobilenet: ImageNet MobileNetV2 (shipped); "
                                   "vgg16 only if its weights are installed")
        with gr.Row():
            latent_dist = gr.Number(d.latent_dist, label="Latent-distance weight",
                                    info="pulls towards the average picture")
            noise = gr.Checkbox(d.optimize_noise, label="Optimise noise maps")
            seed = gr.Number(d.seed, precision=0, label="Seed",
                             info="StyleGAN2 models: another seed, another cat or face" if tab == "scribble" else None)
            every = gr.Number(d.preview_every, precision=0, label="Preview every k steps")
        tune = None
        if tab in TUNABLE_TASKS:
            tune = gr.Slider(0, min(500, settings.max_steps), value=min(tune_default, settings.max_steps), step=10,
                             label="Pivotal tuning steps (0 = off)",
                             info="after the search, fine-tune a private copy of the generator so the result looks "
                                  "more like your photo (PTI; each step is slower than a search step)"
                                  + ("; the hole stays the generator's invention" if tab == "inpaint" else ""),
                             elem_id=f"{tab}-tune-steps")
        reset = gr.Button("Reset to defaults", size="sm")
    comps = [space, steps, lr, l1, l2, perceptual, net, latent_dist, noise, optimizer, seed, every]
    assert len(comps) == len(CONTROL_FIELDS)
    return comps + [reset, tune]


def _result_panel(tab: str, settings: Settings) -> TabOutputs:
    size = settings.display_size
    second_label = {"inpaint": "Generator output (whole picture)", "scribble": "Result with your strokes outlined",
                    "reconstruct": "Put back into your photo"}.get(tab, "What the loss compares")
    result_label = {"inpaint": "Result (filled region pasted into your photo, its own size)",
                    "colorize": "Result (your photo, its own brightness and size, the model's colours)"
                    }.get(tab, "Result")
    input_label = {"inpaint": "Your photo (region to fill outlined)", "scribble": "Your strokes (what must match)"
                   }.get(tab, "What the result must match")
    with gr.Row():
        input_view = gr.Image(label=input_label, format="png", interactive=False, height=size,
                              elem_classes=["lb-pixels"], elem_id=f"{tab}-input-view",
                              buttons=["download", "fullscreen"])
        result = gr.Image(label=result_label, format="png", interactive=False, height=size,
                          elem_classes=["lb-pixels"], elem_id=f"{tab}-result", buttons=["download", "fullscreen"])
        second = gr.Image(label=second_label, format="png", interactive=False, height=size,
                          elem_classes=["lb-pixels"], elem_id=f"{tab}-second", buttons=["download", "fullscreen"])
    with gr.Row():
        loss = gr.Image(label="Loss (log scale)", format="png", interactive=False, height=200,
                        elem_id=f"{tab}-loss")
        with gr.Column():
            status = gr.Markdown("Ready.", elem_id=f"{tab}-status", elem_classes=["lb-status"])
            files = gr.File(label="Downloads: result PNG, latent (.pt), progress GIF, loss curve",
                            file_count="multiple", interactive=False, elem_id=f"{tab}-files")
    with gr.Row():
        slider = gr.Slider(0, 1, value=0, step=1, label="Rewind to step", interactive=False,
                           info="pick a saved step, look at it, continue from it", elem_id=f"{tab}-rewind")
        continue_btn = gr.Button("Continue from the end", size="sm")
        rewind_btn = gr.Button("Continue from this step", size="sm")
    return TabOutputs(input_view, result, second, loss, status, files, slider, continue_btn, rewind_btn)


def _theme() -> gr.themes.Base:
    # System fonts only: the default theme would fetch Google Fonts, and the app must run offline.
    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def launch_kwargs(settings: Settings) -> dict[str, Any]:
    """Everything `demo.launch` gets (Gradio 6: theme and css go here)."""
    return dict(server_name=settings.host, server_port=settings.port, share=settings.share,
                allowed_paths=settings.allowed_paths, max_file_size=settings.max_file_size, theme=_theme(),
                css=CSS, ssr_mode=False, show_error=False, state_session_capacity=int(settings.max_sessions))


def start_queue(demo: gr.Blocks, settings: Settings) -> None:
    """`demo.queue(...)` with the queue's idle polling replaced by waiting (app.gradio_fixes.quiet_queue) and
    updated outputs kept at their ids (app.gradio_fixes.keep_update_ids)."""
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    quiet_queue(demo)
    keep_update_ids()  # gr.skip()/gr.update outputs no longer grow the session (app.gradio_fixes)


def build_demo(settings: Settings, *, handlers: Handlers | None = None) -> gr.Blocks:
    """The whole UI. Call `start_queue(demo, settings)` and `demo.launch(**launch_kwargs(settings))` (see
    app.__main__)."""
    h = handlers or Handlers(settings)
    model0 = model_for_tab(settings, TABS[0])  # the Model list follows the selected tab: app.domains
    info0 = describe(model0, settings)
    run_opts = dict(concurrency_id="inversion", concurrency_limit=settings.concurrency,
                    time_limit=int(settings.time_limit + 60), show_progress="minimal")
    private = dict(api_visibility="private")
    suggest = _suggested_model(settings)
    follow = ModelFollower(settings)

    # Gradio's own age-based deletion of the files it cached (app.disk adds the size bound and our run folders).
    delete_cache = (int(settings.sweep_every_s), int(settings.files_max_age_s))
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=delete_cache) as demo:
        session = gr.State(None, delete_callback=delete_session)
        gr.Markdown(f"# {TITLE}\nDraw, paint or upload; a GAN searches its latent space for a picture that "
                    "fits. Results stream live — press **Stop** any time.")
        with gr.Row():
            model = gr.Dropdown(model_choices(settings), value=model0, label="Model", allow_custom_value=True,
                                elem_id="model", scale=2,
                                info="bundled models work offline; catalogue ones download on first use")
            model_md = gr.Markdown(h.model_info(model0))
        picked = gr.State(False)  # the visitor chose a model in the list: tabs stop moving it
        model.input(lambda: True, None, picked, **private)
        all_controls: list = []
        all_tunes: list = []  # TUNING_TABS order (Handlers.model_changed)

        with gr.Tabs():
            for tab in TABS:
                with gr.Tab(TAB_TITLES[tab], id=tab) as tab_block:
                    gr.Markdown(HELP[tab])
                    task = gr.State(tab)
                    tab_block.select(follow.on_tab, [task, model, picked], [model], **private)
                    extra_out: list = []
                    if tab == "interpolate":
                        interp = _interpolate_tab(h, settings, info0, model, session, run_opts, suggest)
                        all_controls += interp["controls"]
                        tab_block.select(h.library_choices, [session], [interp["a"], interp["b"]], **private)
                        continue
                    with gr.Row():
                        with gr.Column(scale=3):
                            inputs = _task_inputs(tab, h, model, suggest)
                            crop = [] if tab == "scribble" else _crop_controls(tab, h, inputs[0], model)
                            if TAB_DOMAINS[tab] == "face":
                                inputs[0].upload(follow.on_photo, [task, inputs[0], model], [model], **private)
                        with gr.Column(scale=1, min_width=180):
                            run_btn = gr.Button("Run", variant="primary", elem_id=f"{tab}-run")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id=f"{tab}-stop")
                            if tab == "scribble":
                                guide = gr.Checkbox(False, label="Faint guide under the canvas",
                                                    info="the model's average picture (clears the canvas)")
                                guide.change(h.guide, [guide, model], [inputs[0]], **private)
                    if tab == "reconstruct":
                        align_view = gr.ImageSlider(label="Face alignment: before | after", type="filepath",
                                                    format="png", interactive=False, height=240, visible=False,
                                                    elem_id="reconstruct-align")
                        extra_out = [align_view]
                        inputs[1].change(lambda on: gr.update(visible=bool(on)), inputs[1], align_view, **private)
                    out = _result_panel(tab, settings)
                    *controls, reset, tune = _controls(tab, settings, info0)
                    if tune is not None:
                        # .change, not .input: a model change or Reset sets the slider, and the session follows.
                        tune.change(h.set_tuning, [task, tune, session], [session], **private)
                        all_tunes.append(tune)
                    all_controls += controls
                    handler = getattr(h, tab)
                    # The API's `tune_steps` (None: the Settings slider, else the model's default); never shown.
                    api_tune = [gr.Number(None, precision=0, visible=False, label="Pivotal tuning steps (API)")] \
                        if tab in TUNABLE_TASKS else []
                    run_evt = run_btn.click(handler, inputs + [model, *controls, session, *crop, *api_tune],
                                            out.outputs(session) + extra_out, api_name=tab, **run_opts)
                    cont_evt = out.continue_btn.click(h.continue_run, [task, out.slider, gr.State(False), model,
                                                                      *controls, session],
                                                      out.outputs(session), **private, **run_opts)
                    rew_evt = out.rewind_btn.click(h.continue_run, [task, out.slider, gr.State(True), model,
                                                                   *controls, session],
                                                   out.outputs(session), **private, **run_opts)
                    stop_btn.click(None, cancels=[run_evt, cont_evt, rew_evt]).then(
                        h.after_stop, [task, session], [out.status, out.files, out.slider], **private)
                    out.slider.release(h.rewind_preview, [task, out.slider, session],
                                       [out.result, out.second, out.status], **private)
                    reset.click(h.reset_defaults, [task, model], controls + ([tune] if tune is not None else []),
                                **private)

        defaults = gr.State(defaults_key(info0.arch, info0.task_defaults))  # see Handlers.model_changed

        def on_unload(request: gr.Request) -> None:
            h.on_unload(request)
            forget_session(demo, getattr(request, "session_hash", None))
        demo.unload(on_unload)
        assert len(all_tunes) == len(TUNING_TABS)
        model.change(h.model_changed, [model, defaults], [defaults, *all_controls, *all_tunes], **private).then(
            h.model_info, [model], [model_md], **private)
    return demo


def _crop_controls(tab: str, h: Handlers, photo, model: gr.Dropdown) -> list:
    """Crop sliders (API parameters crop_x, crop_y, crop_size, in percent) and a view of the square the model sees;
    face models align the face instead (the view shows the aligned square)."""
    with gr.Accordion("The square the model sees", open=tab != "inpaint"):
        view = gr.Image(label="Your photo: the model sees the square outlined (faces: aligned automatically)",
                        format="png", interactive=False, height=240, elem_id=f"{tab}-crop-view")
        with gr.Row():
            sliders = [gr.Slider(0, 100, value=50, step=1, label="Crop centre x (%)"),
                       gr.Slider(0, 100, value=50, step=1, label="Crop centre y (%)"),
                       gr.Slider(5, 100, value=100, step=1, label="Crop size (% of the short side)")]
    show = dict(fn=h.crop_view, inputs=[photo, *sliders, model], outputs=[view], api_visibility="private",
                show_progress="hidden", trigger_mode="always_last")
    for s in sliders:
        s.release(**show)
    photo.change(**show)
    model.change(**show)
    return sliders


def _task_inputs(tab: str, h: Handlers, model: gr.Dropdown, suggest) -> list:
    """Input components of a task tab (in the handler's argument order), with their examples."""
    if tab == "scribble":
        sketch = Canvas(label="Draw here", type="numpy", image_mode="RGBA", sources=(), canvas_size=(CANVAS, CANVAS),
                        fixed_canvas=True, format="png", elem_id="scribble-canvas", transforms=(),
                        brush=gr.Brush(colors=PALETTE, default_color="#ff8c00", color_mode="defaults",
                                       default_size=12),
                        eraser=gr.Eraser(default_size=16), layers=False, height=560)
        rows = _examples_for("scribble")
        if rows:
            hidden = PhotoInput(type="filepath", image_mode=None, visible=False, label="Stroke picture")
            gr.Examples(rows, inputs=[hidden], outputs=[sketch, model], label="Example scribbles",
                        fn=lambda p: (h.scribble_example(p), suggest(p)), run_on_click=True,
                        cache_examples=False, api_visibility="private")
        return [sketch]
    if tab == "inpaint":
        editor = Canvas(label="Your photo: paint the region to fill", type="numpy", image_mode="RGBA",
                        sources=("upload", "clipboard"), format="png", elem_id="inpaint-canvas", transforms=(),
                        canvas_size=(CANVAS, CANVAS),
                        brush=gr.Brush(colors=[(_hex(INPAINT_BRUSH), INPAINT_BRUSH_OPACITY)], color_mode="fixed",
                                       default_size=24),
                        eraser=gr.Eraser(default_size=24), layers=False, height=560)
        rows = _examples_for("inpaint")
        if rows:
            photo = PhotoInput(type="filepath", image_mode=None, visible=False, label="Photo")
            mask = PhotoInput(type="filepath", image_mode=None, visible=False, label="Mask (white = fill)")
            gr.Examples(rows, inputs=[photo, mask], outputs=[editor, model], label="Examples (photo + mask)",
                        fn=lambda p, m: (h.inpaint_example(p, m), suggest(p)), run_on_click=True,
                        cache_examples=False, api_visibility="private")
        return [editor]
    image = PhotoInput(type="filepath", image_mode=None, label="Your photo", sources=("upload", "clipboard"),
                       elem_id=f"{tab}-input", height=320)
    comps: list = [image]
    if tab == "reconstruct":
        comps.append(gr.Checkbox(False, label="Align face first", info=_face_align_info()))
    elif tab == "deblur":
        with gr.Row():
            comps.append(gr.Slider(3, 21, value=9, step=2, label="Blur kernel size (odd)"))
            comps.append(gr.Slider(0.5, 6.0, value=2.0, step=0.1, label="Blur sigma"))
        comps.append(gr.Checkbox(False, label="Blur my sharp photo first (demo)"))
    elif tab == "superres":
        comps.append(gr.Radio([2, 4, 8], value=4, label="Factor",
                              info="how many times smaller your photo is than the result"))
    rows = _examples_for(tab)
    if rows:
        gr.Examples(rows, inputs=[image], outputs=[model], fn=suggest, run_on_click=True, cache_examples=False,
                    api_visibility="private")
    return comps


def _interpolate_tab(h: Handlers, settings: Settings, info0: ModelInfo, model, session, run_opts, suggest) -> dict:
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                image_a = PhotoInput(type="filepath", image_mode=None, label="Image A", elem_id="interpolate-a",
                                     height=240)
                image_b = PhotoInput(type="filepath", image_mode=None, label="Image B", elem_id="interpolate-b",
                                     height=240)
            with gr.Row():
                choices = [("(none: use the image)", "")]
                earlier_a = gr.Dropdown(choices, value="", label="…or an earlier result for A",
                                        allow_custom_value=True)
                earlier_b = gr.Dropdown(choices, value="", label="…or an earlier result for B",
                                        allow_custom_value=True)
            frames = gr.Slider(2, 60, value=16, step=1, label="Number of frames")
            rows = _examples_for("interpolate")
            if rows:
                gr.Examples(rows, inputs=[image_a, image_b], outputs=[model], fn=suggest, run_on_click=True,
                            cache_examples=False, api_visibility="private")
        with gr.Column(scale=1, min_width=180):
            run_btn = gr.Button("Run", variant="primary", elem_id="interpolate-run")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="interpolate-stop")
            refresh = gr.Button("Refresh earlier results", size="sm")
    with gr.Row():
        preview = gr.Image(label="Now", format="png", interactive=False, height=settings.display_size,
                           elem_classes=["lb-pixels"], elem_id="interpolate-result")
        loss = gr.Image(label="Loss (log scale)", format="png", interactive=False, height=200)
        with gr.Column():
            status = gr.Markdown("Ready.", elem_id="interpolate-status", elem_classes=["lb-status"])
            files = gr.File(label="Downloads: GIF, MP4, frame strip, latents", file_count="multiple",
                            interactive=False)
    with gr.Row():
        video = gr.Video(label="Morph (MP4)", interactive=False, autoplay=True, loop=True, height=settings.display_size)
        gif = gr.Image(label="Morph (GIF)", type="filepath", interactive=False, height=settings.display_size)
    gallery = gr.Gallery(label="Frames", columns=8, height="auto", interactive=False)
    *controls, reset, _ = _controls("interpolate", settings, info0)  # morphs use the untuned generator
    evt = run_btn.click(h.interpolate, [image_a, image_b, earlier_a, earlier_b, frames, model, *controls, session],
                        [preview, loss, status, video, gif, gallery, files, session], api_name="interpolate",
                        **run_opts)
    stop_btn.click(None, cancels=[evt])
    refresh.click(h.library_choices, [session], [earlier_a, earlier_b], api_visibility="private")
    reset.click(h.reset_defaults, [gr.State("interpolate"), model], controls, api_visibility="private")
    return {"controls": controls, "a": earlier_a, "b": earlier_b}


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


__all__ = ["build_demo", "launch_kwargs", "start_queue"]
