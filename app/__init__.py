"""LatentBrush web app: a thin Gradio UI over `engine` (GAN inversion) and `models` (networks, weights).

Start it with `python -m app` (see `app.__main__` for the flags). Layout and wiring live in `app.ui`
(`build_demo(settings)`), the event handlers in `app.handlers` (thin: settings sliders in `app.controls`, editor
values and uploads in `app.inputs`, runs in `app.streaming`, what the page shows in `app.views`, morphs in
`app.interpolation`, per-visitor state in `app.session`), server settings in `app.settings`, the shared model
cache in `app.model_cache`, small display helpers in `app.render` and the validation of every upload in
`app.uploads`. Importing this package has no side effects (no model loads, no server).
"""
