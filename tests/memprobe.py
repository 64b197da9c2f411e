"""Memory probe for a running LatentBrush server: `python -m tests.memprobe --out DIR [--memray FILE] -- APP_ARGS`.

Runs `python -m app APP_ARGS` in this process. Each SIGUSR1 writes DIR/dumpN.txt: RSS, glibc's `mallinfo2` (heap,
in use, free, mmapped), object counts by type that changed since the previous dump, and Gradio's per-session
record sizes (blocks and block configs per session against the UI's own). With `--memray FILE` (needs `pip install
memray`, see requirements-dev.txt) the first SIGUSR1 starts a memray capture instead of dump 0 and SIGHUP stops
it: `memray flamegraph --leaks FILE` then shows what the runs in between allocated and still hold (send SIGHUP
while the clients are still connected, or their sessions are freed first; PYTHONMALLOC=malloc for Python objects
by line). Drive it with `python -m tests.load --url http://127.0.0.1:PORT/` and signal it between batches.
A diagnostic tool (issue 16), not a test: it prints, it never fails.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import signal
import sys
import threading
from collections import Counter
from pathlib import Path


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _mallinfo() -> str:
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return "mallinfo2 n/a"
    fn.restype = _MallInfo2
    m = fn()
    return f"heap {m.arena >> 20} MiB (in use {m.uordblks >> 20}, free {m.fordblks >> 20}), mmapped {m.hblkhd >> 20} MiB"


def _rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


class Probe:
    def __init__(self, out: Path, memray_file: str | None) -> None:
        self.out, self.memray_file = out, memray_file
        self.n, self.types, self.demo, self.tracker = 0, None, None, None
        out.mkdir(parents=True, exist_ok=True)

    def on_usr1(self, *_: object) -> None:
        if self.memray_file and self.tracker is None:
            import memray  # noqa: PLC0415 - optional
            self.tracker = memray.Tracker(self.memray_file, trace_python_allocators=False, native_traces=False)
            self.tracker.__enter__()
            print("memprobe: memray capture started", file=sys.stderr, flush=True)
            return
        threading.Thread(target=self.dump, daemon=True).start()

    def on_hup(self, *_: object) -> None:
        if self.tracker is not None:
            self.tracker.__exit__(None, None, None)
            print("memprobe: memray capture stopped", file=sys.stderr, flush=True)

    def dump(self) -> None:
        gc.collect()
        types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
        lines = [f"dump {self.n}: RSS {_rss_mib()} MiB; {_mallinfo()}; threads {threading.active_count()}"]
        if self.demo is not None:
            sessions = list(self.demo.state_holder.session_data.values())
            lines.append(f"UI blocks {len(self.demo.blocks)}; per session blocks "
                         f"{[len(s.blocks_config.blocks) for s in sessions]} configs {[len(s.config_values) for s in sessions]}")
        if self.types is not None:
            grown = sorted(((k, v - self.types[k]) for k, v in types.items() if v != self.types[k]), key=lambda kv: -abs(kv[1]))
            lines += [f"  {k}: {d:+d} (now {types[k]})" for k, d in grown[:30]]
        self.types = types
        (self.out / f"dump{self.n}.txt").write_text("\n".join(lines) + "\n")
        print("memprobe: " + lines[0], file=sys.stderr, flush=True)
        self.n += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.memprobe", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--memray", default=None, metavar="FILE")
    p.add_argument("app_args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    probe = Probe(a.out, a.memray)
    signal.signal(signal.SIGUSR1, probe.on_usr1)
    signal.signal(signal.SIGHUP, probe.on_hup)
    import app.ui as ui  # noqa: PLC0415

    build = ui.build_demo

    def build_and_keep(*args, **kwargs):
        probe.demo = build(*args, **kwargs)
        return probe.demo

    ui.build_demo = build_and_keep
    from app.__main__ import main as app_main  # noqa: PLC0415

    return app_main([x for x in a.app_args if x != "--"])


if __name__ == "__main__":
    sys.exit(main())
