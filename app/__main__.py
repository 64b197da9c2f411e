"""`python -m app [--models cat=NAME,face=NAME] [--model NAME_OR_PATH] [--device cpu|cuda] [--port P] ...`

Starts the LatentBrush web app (default http://127.0.0.1:7860) with the bundled models, offline.
Flags in `$LATENTBRUSH_ARGS` come first (so a container's fixed CMD can be configured from its environment,
e.g. a Space variable); flags on the command line override them.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import threading


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description="LatentBrush: interactive GAN-inversion editor")
    p.add_argument("--model", default=None,
                   help="default model: bundled name (cat64, face64, ...), catalogue name or checkpoint path "
                        "(default: the first bundled model)")
    p.add_argument("--models", default=None, metavar="DOMAIN=MODEL,...",
                   help="the model standing for each domain, e.g. cat=afhqcat,face=ffhq: Scribble starts on the "
                        "cat model, the photo tabs on the face model; all are loaded at start-up "
                        "(default: the bundled cat=cat64,face=face64)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (needs network)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="inversions running at the same time, stacked into shared batches (default 4)")
    p.add_argument("--queue-size", type=int, default=16, help="requests allowed to wait (default 16)")
    p.add_argument("--max-steps", type=int, default=1000, help="step cap per run (default 1000)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per run before the best result so "
                                                                    "far is returned (default 120)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on a CPU, where one thread per engine lane is fastest)")
    p.add_argument("--workers", type=int, default=None,
                   help="batched-engine lanes (default: one per CPU core on a CPU, 1 on a GPU)")
    p.add_argument("--no-batching", action="store_true",
                   help="run each inversion on its own instead of stacking concurrent runs into one batch")
    p.add_argument("--no-preload", action="store_true", help="do not load the models at start-up")
    p.add_argument("--files-max-age", type=float, default=6 * 3600.0, metavar="SECONDS",
                   help="delete cached outputs and run folders older than this (default 21600 = 6 h)")
    p.add_argument("--cache-max-mb", type=float, default=1024.0,
                   help="bound on Gradio's file cache (GRADIO_TEMP_DIR), oldest deleted first (default 1024)")
    p.add_argument("--runs-max-mb", type=float, default=1024.0,
                   help="bound on the run folders under $LATENTBRUSH_TMP/runs, oldest first (default 1024)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def env_args() -> list[str]:
    """`$LATENTBRUSH_ARGS` split like a shell would (empty when unset)."""
    return shlex.split(os.environ.get("LATENTBRUSH_ARGS", ""))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(env_args() + (sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .memory import tune_allocator  # noqa: PLC0415

    tune_allocator()  # before any thread exists: a server's RSS otherwise creeps up with every run (app.memory)

    import torch  # noqa: PLC0415 - keep `--help` fast

    from .handlers import Handlers
    from .session import cleanup_stale_runs
    from .disk import Sweeper
    from .ui import build_demo, launch_kwargs, start_queue

    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is available; use --device cpu", file=sys.stderr)
        return 2
    os.environ.update(settings.gradio_env)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    cleanup_stale_runs(settings)

    handlers = Handlers(settings)
    demo = build_demo(settings, handlers=handlers)
    start_queue(demo, settings)
    Sweeper(settings, demo).start()
    if not args.no_preload:
        threading.Thread(target=_preload, args=(handlers,), daemon=True, name="preload").start()
    demo.launch(**launch_kwargs(settings))
    return 0


def settings_from_args(args: argparse.Namespace):
    """Settings from parsed flags (also used by space_app.py); ValueError says what is wrong."""
    from .domains import parse_models  # noqa: PLC0415 - keep `--help` fast
    from .settings import Settings  # noqa: PLC0415

    domain_models = parse_models(args.models) if args.models is not None else None
    return Settings(model=args.model, models=domain_models, device=args.device, host=args.host, port=args.port,
                    share=args.share, concurrency=args.concurrency, queue_size=args.queue_size,
                    max_steps=args.max_steps, time_limit=args.time_limit, threads=args.threads,
                    workers=args.workers, batching=not args.no_batching,
                    files_max_age_s=getattr(args, "files_max_age", 6 * 3600.0),
                    cache_max_mb=getattr(args, "cache_max_mb", 1024.0), runs_max_mb=getattr(args, "runs_max_mb", 1024.0))


def _preload(handlers) -> None:
    """Load + prepare the start-up models (`--model`, each domain's model) in the background, so that first
    runs start sooner."""
    from .domains import preload_names  # noqa: PLC0415
    from .model_cache import default_model, resolve  # noqa: PLC0415

    log = logging.getLogger("app")
    names = preload_names(handlers.settings) or [n for n in [default_model(handlers.settings)] if n]
    if not names:
        log.warning("no bundled model found: put NAME.json + NAME.safetensors in assets/models/ or use --model")
        return
    for name in names[:handlers.cache.maxsize]:
        try:
            handlers.cache.get(resolve(name, handlers.settings))
            log.info("model %s ready", name)
        except Exception as exc:  # noqa: BLE001 - the UI reports the error again when the model is used
            log.warning("could not preload %s: %s", name, exc)


if __name__ == "__main__":
    sys.exit(main())
