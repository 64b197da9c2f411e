"""Bounded load / soak driver for a LatentBrush server on loopback (never any other host).

`python -m tests.load --clients 16 --runs 64 [--steps 20] [--model cat64] [--concurrency 2] [--soak-minutes 0]
[--disconnects 0]` starts `python -m app` on 127.0.0.1 (or uses `--url http://127.0.0.1:PORT/`), drives
`/reconstruct` concurrently through gradio_client with flat-colour pictures (one colour per run from a palette
of 8), and prints completed / failed / queue-full counts, p50/p95 time to first frame and to result, peak RSS
of the server, and how many results look like another run's input (crossed). Stops by itself.

`--soak-minutes M` keeps the clients busy for M minutes and prints the server's RSS per minute, the least-squares
slope of RSS over the second half of the soak (MiB/minute and as % growth over that half) and the disk used by
Gradio's cache and the run folders (the server gets its own GRADIO_TEMP_DIR and LATENTBRUSH_TMP here); it exits
non-zero when that growth is above `--max-growth` percent (default 3). `--server-arg=--cache-max-mb=64` (repeatable)
passes options to `python -m app`.

`--disconnects N` then N times starts a long run from a separate client process, kills that process mid-run
(its sockets close, as when a browser tab closes) while a probe run waits in the queue behind it (use
`--concurrency 1`), and prints how long the worker took to pass to the probe and the server's RSS before the
killed run and after it.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [(220, 40, 40), (40, 200, 60), (40, 80, 220), (230, 220, 40), (200, 60, 200), (40, 210, 210),
           (245, 245, 245), (20, 20, 20)]
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    completed: int = 0
    failed: int = 0
    queue_full: int = 0
    crossed: int = 0
    first_frame: list = field(default_factory=list)
    result: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def mean_colour(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def one_run(client, image: Path, colour_idx: int, args, stats: Stats) -> None:
    from gradio_client import handle_file
    t0 = time.perf_counter()
    first = None
    try:
        job = client.submit(image=handle_file(str(image)), align_face=False, model=args.model, steps=args.steps,
                            preview_every=max(1, args.steps // 4), api_name="/reconstruct")
        for out in job:
            if first is None and out and out[1]:
                first = time.perf_counter() - t0
        outs = job.outputs()
        final = outs[-1]
        took = time.perf_counter() - t0
        colour = mean_colour(final[1])
        dists = [np.linalg.norm(colour - np.array(c)) for c in PALETTE]
        with stats.lock:
            stats.completed += 1
            stats.result.append(took)
            if first is not None:
                stats.first_frame.append(first)
            # A result nearer to another run's colour than to its own input is counted as crossed.
            if int(np.argmin(dists)) != colour_idx and dists[colour_idx] > min(dists) + 60:
                stats.crossed += 1
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
        msg = str(exc)
        with stats.lock:
            if "queue" in msg.lower() or "busy" in msg.lower() or "too many" in msg.lower():
                stats.queue_full += 1
            else:
                stats.failed += 1
                stats.errors.append(msg[:200])


_KILLED_CLIENT = """
import sys
from gradio_client import Client, handle_file
job = Client(sys.argv[1], verbose=False).submit(image=handle_file(sys.argv[2]), align_face=False, model=sys.argv[3],
                                                 steps=int(sys.argv[4]), preview_every=5, api_name="/reconstruct")
for out in job:
    if out and out[1]:
        print("running", flush=True)
"""


def disconnects(url: str, pid: int | None, image: Path, args, n: int) -> list[tuple[float, int, int]]:
    """(seconds from the kill to the probe starting, RSS KiB before the killed run, RSS KiB after) per round."""
    from gradio_client import Client, handle_file
    rounds = []
    for _ in range(n):
        before = rss_kb(pid) if pid else 0
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, url, str(image), args.model, "100000"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # the first streamed frame: the run holds the worker now
        time.sleep(2.0)
        probe = Client(url, verbose=False).submit(image=handle_file(str(image)), align_face=False, model=args.model,
                                                  steps=5, preview_every=5, api_name="/reconstruct")
        time.sleep(1.0)  # the probe is queued behind the long run
        t_kill = time.perf_counter()
        proc.kill()
        proc.wait()
        started = None
        for _out in probe:
            started = time.perf_counter() - t_kill  # the probe handler's first output ("Starting")
            break
        probe.result()
        time.sleep(2.0)
        rounds.append((started if started is not None else float("nan"), before, rss_kb(pid) if pid else 0))
    return rounds


def slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in MiB per minute."""
    t = np.array([x for x, _ in samples], dtype=np.float64) / 60.0
    y = np.array([v for _, v in samples], dtype=np.float64) / 1024.0
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, y, 1)[0])


def soak_report(samples: list[tuple[float, int]], *, warm_up_s: float = 60.0) -> tuple[str, float | None]:
    """RSS per minute (median of that minute's samples, which move with the runs in flight), the growth from
    the first minute after warm-up to the last, and the least-squares slope over the second half of the soak.
    Returns (report, growth over the second half in % of its starting RSS, None when too short)."""
    minutes: dict[int, list[int]] = {}
    for t, kb in samples:
        if t >= warm_up_s:
            minutes.setdefault(int(t // 60), []).append(kb)
    if len(minutes) < 2:
        return "too short to report growth", None
    med = {m: statistics.median(v) / 1024 for m, v in sorted(minutes.items())}
    first, last = med[min(med)], med[max(med)]
    series = " ".join(f"{v:.0f}" for v in med.values())
    end = samples[-1][0]
    second = [(t, kb) for t, kb in samples if t >= end / 2]
    slope = slope_per_minute(second)
    half_min = (second[-1][0] - second[0][0]) / 60.0
    start_mib = statistics.median(kb for _, kb in second[:12]) / 1024
    growth = slope * half_min / start_mib * 100.0
    return (f"RSS per minute after warm-up (MiB, medians): {series}; first {first:.0f} -> last {last:.0f} MiB "
            f"({(last - first) / first * 100:+.1f}%)\nsoak: second half ({half_min:.1f} min from {start_mib:.0f} MiB): "
            f"slope {slope:+.2f} MiB/min = {growth:+.2f}% over the half"), growth


def dir_mib(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total / 2 ** 20


def pct(values: list[float], q: float) -> str:
    if not values:
        return "n/a"
    return f"{float(np.percentile(values, q)):.2f}s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--runs", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--model", default="cat64")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--url", help="an already running server on 127.0.0.1 (else one is started)")
    p.add_argument("--soak-minutes", type=float, default=0.0, help="keep the clients busy this long, sampling RSS")
    p.add_argument("--disconnects", type=int, default=0, help="kill N client processes mid-run (see above)")
    p.add_argument("--timeout", type=float, default=1800.0, help="hard stop for the whole run (seconds)")
    p.add_argument("--max-growth", type=float, default=3.0,
                   help="soak: fail when RSS grows more than this %% over the second half (least-squares slope)")
    p.add_argument("--server-arg", action="append", default=[], help="extra option for `python -m app`")
    a = p.parse_args(argv)
    from gradio_client import Client

    proc = None
    tmp = Path(tempfile.mkdtemp(prefix="lb-load-"))
    url = a.url
    if url and urllib.parse.urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        print("error: the load driver only talks to loopback servers", file=sys.stderr)
        return 2
    if not url:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = subprocess.Popen([sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port),
                                 "--concurrency", str(a.concurrency), "--queue-size", str(a.queue_size),
                                 "--model", a.model, "--log-level", "WARNING", *a.server_arg], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"),
                                env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                     "GRADIO_TEMP_DIR": str(tmp / "gradio"), "LATENTBRUSH_TMP": str(tmp / "lb")})
    images = []
    for i, c in enumerate(PALETTE):
        img = np.zeros((96, 96, 3), np.uint8) + np.array(c, np.uint8)
        images.append(tmp / f"c{i}.png")
        Image.fromarray(img).save(images[-1])
    try:
        deadline = time.time() + 120
        client = None
        while time.time() < deadline:
            try:
                client = Client(url, verbose=False, download_files=str(tmp))
                break
            except Exception:  # noqa: BLE001 - server still starting
                time.sleep(1)
        if client is None:
            print("error: server did not come up", file=sys.stderr)
            return 2
        clients = [client] + [Client(url, verbose=False, download_files=str(tmp)) for _ in range(a.clients - 1)]
        pid = proc.pid if proc else None
        base_rss = rss_kb(pid) if pid else 0
        soak_failed = False
        stats = Stats()
        counter = iter(range(10 ** 9))
        count_lock = threading.Lock()
        stop_at = time.time() + (a.soak_minutes * 60 if a.soak_minutes else a.timeout)
        rss_samples: list[tuple[float, int]] = []
        disk_samples: list[tuple[float, float, float]] = []  # (s, Gradio cache MiB, run folders MiB)
        t_start = time.time()

        def worker(ci: int) -> None:
            while time.time() < stop_at:
                with count_lock:
                    k = next(counter)
                if not a.soak_minutes and k >= a.runs:
                    return
                idx = k % len(PALETTE)
                one_run(clients[ci], images[idx], idx, a, stats)

        def sampler() -> None:
            while any(t.is_alive() for t in threads):
                if pid:
                    rss_samples.append((time.time() - t_start, rss_kb(pid)))
                    if len(rss_samples) % 12 == 1 and proc is not None:  # once a minute
                        disk_samples.append((time.time() - t_start, dir_mib(tmp / "gradio"), dir_mib(tmp / "lb")))
                time.sleep(5)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.clients)]
        for t in threads:
            t.start()
        sampler_thread = threading.Thread(target=sampler, daemon=True)
        sampler_thread.start()
        for t in threads:
            t.join(timeout=max(1.0, stop_at - time.time() + 600))
        wall = time.time() - t_start
        print(f"server {url}  model={a.model}  concurrency={a.concurrency}  clients={a.clients}  "
              f"steps/run={a.steps}  wall={wall:.0f}s")
        print(f"completed {stats.completed}  failed {stats.failed}  queue-full {stats.queue_full}  "
              f"crossed {stats.crossed}")
        print(f"time to first frame p50 {pct(stats.first_frame, 50)} p95 {pct(stats.first_frame, 95)};  "
              f"to result p50 {pct(stats.result, 50)} p95 {pct(stats.result, 95)}")
        if pid:
            print(f"server RSS: start {base_rss / 1024:.0f} MiB, peak {rss_kb(pid, 'VmHWM') / 1024:.0f} MiB, "
                  f"end {rss_kb(pid) / 1024:.0f} MiB")
            if a.soak_minutes and len(rss_samples) > 4:
                report, growth = soak_report(rss_samples)
                print("soak: " + report)
                if growth is not None and growth > a.max_growth:
                    print(f"soak: FAILED: RSS grew {growth:.2f}% over the second half (bound {a.max_growth:g}%)")
                    soak_failed = True
            if disk_samples:
                print("disk (MiB) per minute, Gradio cache + run folders: " +
                      " ".join(f"{c:.0f}+{r:.0f}" for _, c, r in disk_samples) +
                      f"; max {max(c for _, c, _ in disk_samples):.0f} + {max(r for _, _, r in disk_samples):.0f}")
        for e in stats.errors[:5]:
            print("  error:", e)
        if a.disconnects:
            rounds = disconnects(url, pid, images[0], a, a.disconnects)
            freed = [r[0] for r in rounds]
            print(f"disconnects {len(rounds)}: worker passed to the queued probe {statistics.median(freed):.2f}s "
                  f"(median) / {max(freed):.2f}s (max) after the client was killed")
            for k, (_, before, after) in enumerate(rounds):
                print(f"  round {k + 1}: server RSS before the run {before / 1024:.0f} MiB, after {after / 1024:.0f} "
                      f"MiB ({(after - before) / max(before, 1) * 100:+.1f}%)")
        return 0 if stats.failed == 0 and stats.crossed == 0 and not soak_failed else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
