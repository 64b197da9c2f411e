"""Full-size official-format networks with random weights, written at test time (never committed), and their cost.

FFHQ size is the paper's config-f at 1024 px (channel_base 32768, channel_max 512, 8 mapping layers, w_dim 512,
num_fp16_res 4, conv_clamp 256), AFHQ size the same at 512 px: what `ffhq.pkl` / `afhqcat.pkl` hold, minus the
training. Files are laid out as the official training loop writes them (tests/official_format.py).

    python -m tests.full_size write --size ffhq PATH     # ~360 MB for ffhq (G, G_ema, D)
    python -m tests.full_size measure PATH               # load time and RSS, in this fresh process
    python -m tests.full_size sessions PATH [--sessions 4 --steps 2]
        # starts `python -m app` on 127.0.0.1 with PATH's folder as models folder, finishes one /inpaint run of
        # PATH per session (one gradio_client each, kept open so the sessions stay), prints the server's RSS
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

import models
from models import ModelConfig
from tests.official_format import write_official_pickle

RESOLUTIONS = {"ffhq": 1024, "afhq": 512}


def full_size_config(size: str) -> ModelConfig:
    """config-f kwargs at `RESOLUTIONS[size]` (as the official train.py sets them for `--cfg=paper1024`)."""
    res = RESOLUTIONS[size]
    g = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
             mapping_kwargs=dict(num_layers=8),
             synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))
    d = dict(c_dim=0, img_resolution=res, img_channels=3, channel_base=32768, channel_max=512, num_fp16_res=4,
             conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=4))
    return ModelConfig(arch="stylegan2", g_kwargs=g, d_kwargs=d, name=f"{size}-size-random",
                       domain="random test network", licence="test-only", provenance="tests/full_size.py")


def write_full_size_pickle(path: str | Path, size: str, *, seed: int = 0, with_discriminator: bool = True) -> Path:
    """Random-weight `size` network pickled as the official training loop does."""
    config = full_size_config(size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = models.build_generator(config).eval().requires_grad_(False)
        D = models.build_discriminator(config).eval().requires_grad_(False) if with_discriminator else None
        with torch.no_grad():  # a w_avg away from 0, as in a trained network (truncation then does something)
            G.mapping.w_avg.normal_()
    return write_official_pickle(path, G, D, layout="ada", config=config)


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(path: str | Path) -> dict[str, float]:
    """Load `path` with models.load_model in this process: seconds, RSS before/after, peak RSS, parameters."""
    before = rss_mib()
    t0 = time.perf_counter()
    m = models.load_model(path)
    seconds = time.perf_counter() - t0
    after = rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_g = sum(p.numel() for p in m.G.parameters())
    n_d = sum(p.numel() for p in m.D.parameters()) if m.D is not None else 0
    return dict(load_s=seconds, rss_before_mib=before, rss_after_mib=after, peak_rss_mib=peak,
                g_params_m=n_g / 1e6, d_params_m=n_d / 1e6, file_mib=Path(path).stat().st_size / 2 ** 20)


def sessions(path: str | Path, *, n: int = 4, steps: int = 2, timeout_s: float = 3600.0) -> list[str]:
    """Server RSS with `n` sessions each holding a finished `steps`-step inpaint run of `path` (lines to print)."""
    import os
    import subprocess
    import tempfile

    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    from tests.load import free_port, rss_kb

    path = Path(path).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="lb-sessions-"))
    photo, mask = tmp / "photo.png", tmp / "mask.png"
    rgb = np.zeros((300, 300, 3), np.uint8)
    rgb[:, :150], rgb[:, 150:] = (30, 120, 200), (220, 200, 40)
    Image.fromarray(rgb).save(photo)
    hole = np.zeros((300, 300), np.uint8)
    hole[100:200, 110:190] = 255
    Image.fromarray(hole).save(mask)
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port),
                             "--concurrency", "1", "--max-steps", str(steps), "--time-limit", str(timeout_s),
                             "--log-level", "WARNING"], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "server.log", "w"),
                            env={**os.environ, "LATENTBRUSH_MODELS": str(path.parent),
                                 "GRADIO_ANALYTICS_ENABLED": "False"})
    lines = []
    try:
        deadline = time.time() + 180
        clients: list[Client] = []
        while not clients and time.time() < deadline:
            try:
                clients.append(Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp)))
            except Exception:  # noqa: BLE001 - server still starting
                time.sleep(2)
        lines.append(f"server up: RSS {rss_kb(proc.pid) / 1024:.0f} MiB")
        for k in range(n):
            if k:
                clients.append(Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp)))
            t0 = time.perf_counter()
            editor = {"background": handle_file(str(photo)), "layers": [handle_file(str(mask))], "composite": None}
            out = clients[k].predict(editor=editor, model=str(path), steps=steps, perceptual=0.0, preview_every=1,
                                     api_name="/inpaint")
            status = str(out[4]).splitlines()[0][:60]
            lines.append(f"session {k + 1}: {status!r} in {time.perf_counter() - t0:.0f} s; server RSS "
                         f"{rss_kb(proc.pid) / 1024:.0f} MiB (peak {rss_kb(proc.pid, 'VmHWM') / 1024:.0f} MiB)")
        time.sleep(5)
        lines.append(f"{n} sessions each holding a finished run: server RSS {rss_kb(proc.pid) / 1024:.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.full_size", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--size", choices=sorted(RESOLUTIONS), default="ffhq")
    w.add_argument("--no-discriminator", action="store_true")
    w.add_argument("path")
    m = sub.add_parser("measure")
    m.add_argument("path")
    se = sub.add_parser("sessions")
    se.add_argument("path")
    se.add_argument("--sessions", type=int, default=4)
    se.add_argument("--steps", type=int, default=2)
    a = p.parse_args(argv)
    if a.cmd == "sessions":
        for line in sessions(a.path, n=a.sessions, steps=a.steps):
            print(line, flush=True)
        return 0
    if a.cmd == "write":
        t0 = time.perf_counter()
        out = write_full_size_pickle(a.path, a.size, with_discriminator=not a.no_discriminator)
        print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    else:
        torch.set_num_threads(1)
        r = measure(a.path)
        print(f"{Path(a.path).name}: {r['file_mib']:.0f} MiB file, G {r['g_params_m']:.1f} M / D "
              f"{r['d_params_m']:.1f} M parameters; load {r['load_s']:.1f} s; RSS {r['rss_before_mib']:.0f} -> "
              f"{r['rss_after_mib']:.0f} MiB (peak {r['peak_rss_mib']:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
