"""Measure, in a real headless Chromium, how long a tab's Run takes to show its first streamed frame and "Done".

`python -m tests.browser_latency [--runs 5] [--model cat64] [--tab inpaint] [--steps 200] [--threads 2]
[--example N] [--timeout 1800]` starts the app in-process on a free loopback port with the bundled models
(assets/models), loads `--model` before measuring, opens the tab in headless Chromium (Debian's
/usr/bin/chromium; never `playwright install`), loads an example, sets the tab's Steps control, does one
warm-up run that is not counted, then `--runs` runs. Each run is timed inside the page with
`performance.now()`: the timestamp is taken in the same JS task that clicks `#TAB-run`, and a MutationObserver
(plus a capturing `load` listener) notes when

- the first streamed frame is shown: the first new `src` of `#TAB-result img` after the click (the previous
  run's image is cleared by the run's "Starting" update, then each streamed frame is a new file URL), and the
  moment that image has loaded (decoded, ready to paint);
- "Done" appears in `#TAB-status` after this run's own "Starting"/"Running" status (until then the status
  still shows the previous run's "Done", under Gradio's queue/timer text).

Prints one line per run, then the median and max of each figure, with the app's own "first frame after X s"
(measured server-side from the handler's start) parsed from the final status.

The example: the first example row that suits `--model` (`app.examples.model_for_example`), so that clicking it
does not switch the Model dropdown to another model (the first inpaint example is a face64 photo); `--example N`
picks row N instead. The steps are set by opening the tab's "Settings" accordion and typing into
`#TAB-steps input` (a gr.Number); the final status ("step N / N") is checked against `--steps`.

A benchmark script, not a test (no `test_` prefix: pytest never collects it). Everything is bounded by
`--timeout` seconds overall; the browser and the server are closed on exit.
"""
from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

TABS = ("scribble", "inpaint", "reconstruct", "colorize", "deblur", "superres", "interpolate")

# Installed once per page: per-run state in window.__lat, reset by __lat.arm(); __lat.click() stamps and clicks.
OBSERVER_JS = """(tab) => {
    const L = window.__lat = {tab, t0: null, prev: null, frameUrl: null, frameSrc: null, frameLoad: null,
                              done: null, doneText: null, sawRunning: false, statuses: []};
    const resultImg = () => document.querySelector(`#${tab}-result img`);
    const statusEl = () => document.querySelector(`#${tab}-status`);
    L.arm = () => {
        const img = resultImg();
        Object.assign(L, {t0: null, prev: img ? img.src : null, frameUrl: null, frameSrc: null, frameLoad: null,
                          done: null, doneText: null, sawRunning: false, statuses: []});
    };
    L.click = () => {
        L.t0 = performance.now();
        document.querySelector(`#${tab}-run`).click();
    };
    const grab = () => {
        if (L.t0 === null) return;
        const now = performance.now();
        const img = resultImg();
        if (L.frameSrc === null && img && img.src && img.src !== L.prev) {
            L.frameSrc = now;
            L.frameUrl = img.src;
            if (img.complete && img.naturalWidth > 0 && L.frameLoad === null) L.frameLoad = now;
        }
        const s = statusEl();
        if (s) {
            const text = s.innerText;
            if (L.statuses.at(-1) !== text) L.statuses.push(text);
            // Until this run's own "Starting"/"Running" update, the status still shows the last run's "Done"
            // (under Gradio's queue/timer overlay text).
            if (text.includes("Starting") || text.includes("Running")) L.sawRunning = true;
            else if (L.sawRunning && text.includes("Done") && L.done === null) { L.done = now; L.doneText = text; }
        }
    };
    new MutationObserver(grab).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      characterData: true});
    document.addEventListener("load", (e) => {
        const t = e.target;
        if (L.t0 !== null && L.frameLoad === null && t instanceof HTMLImageElement && t.src === L.frameUrl
            && t.closest(`#${tab}-result`)) L.frameLoad = performance.now();
    }, true);
}"""

DONE_OR_ERROR_JS = """() => window.__lat.done !== null ||
    [...document.querySelectorAll('[data-testid=toast-body].error')].length > 0"""

TRACKER_JS = """(sel) => { const e = document.querySelector(`${sel} [data-testid=status-tracker]`);
    return e ? !e.classList.contains('hide') : false; }"""


class Timeout(Exception):
    pass


def _on_alarm(signum, frame):  # noqa: ARG001
    raise Timeout("the overall --timeout was reached")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.browser_latency", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="measured runs (after one warm-up run; default 5)")
    p.add_argument("--model", default="cat64", help="bundled model (default cat64)")
    p.add_argument("--tab", default="inpaint", choices=TABS, help="default inpaint")
    p.add_argument("--steps", type=int, default=200, help="the tab's Steps control (default 200)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--example", type=int, default=None,
                   help="example row to load (default: the first one that suits --model)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for everything (default 1800)")
    return p


def pick_example(tab: str, model: str, index: int | None) -> list[str]:
    from app.examples import examples_for, model_for_example

    rows = examples_for(tab)
    if not rows:
        raise SystemExit(f"error: the {tab} tab has no examples (assets/examples/ missing?)")
    if index is not None:
        if not 0 <= index < len(rows):
            raise SystemExit(f"error: --example must be in 0..{len(rows) - 1}")
        return rows[index]
    return next((r for r in rows if model_for_example(r[0]) == model), rows[0])


def app_first_frame(status: str) -> float | None:
    m = re.search(r"first frame after ([0-9.]+) s", status or "")
    return float(m.group(1)) if m else None


def load_example(page, tab: str, row: list[str], timeout_ms: float) -> None:
    """Click the example row whose first picture is row[0]; wait until its event has updated the inputs."""
    panel = page.locator(f"#{tab}-run").locator("xpath=ancestor::div[contains(@class,'tabitem')]")
    name = Path(row[0]).name
    cell = panel.locator(".gallery-item, tbody tr").filter(has=page.locator(f'img[src$="/{name}"]')).first
    # The example's event shows a status tracker on the tab's inputs (e.g. #inpaint-canvas) while it runs.
    target = {"scribble": "#scribble-canvas", "inpaint": "#inpaint-canvas", "interpolate": "#interpolate-a"}.get(
        tab, f"#{tab}-input")
    page.evaluate("""(sel) => { window.__ex = {busy: false, idle: false};
        const check = () => { const e = document.querySelector(`${sel} [data-testid=status-tracker]`);
            if (!e) return; if (!e.classList.contains('hide')) window.__ex.busy = true;
            else if (window.__ex.busy) window.__ex.idle = true; };
        new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true}); }""",
                  target)
    cell.click()
    from playwright.sync_api import TimeoutError as PageTimeout
    try:
        page.wait_for_function("() => window.__ex.idle", timeout=max(1_000, min(timeout_ms, 120_000)))
    except PageTimeout:  # no tracker seen: fall back on a pause (it has loaded by then)
        print("  (no status tracker seen for the example: waited instead)", file=sys.stderr)
    page.wait_for_timeout(1000)  # the editor draws its new background after the event's update


def set_steps(page, tab: str, steps: int) -> None:
    page.locator(f"#{tab}-settings").get_by_text("Settings").first.click()
    box = page.locator(f"#{tab}-steps input")
    box.wait_for()
    box.fill(str(steps))
    box.press("Tab")
    page.wait_for_timeout(300)


def one_run(page, tab: str, deadline: float) -> dict:
    page.evaluate("() => window.__lat.arm()")
    page.evaluate("() => window.__lat.click()")
    remaining_ms = max(1_000, (deadline - time.monotonic()) * 1000)
    page.wait_for_function(DONE_OR_ERROR_JS, timeout=remaining_ms, polling=100)
    lat = page.evaluate("""() => { const L = window.__lat; return {t0: L.t0, frameSrc: L.frameSrc,
        frameLoad: L.frameLoad, done: L.done, doneText: L.doneText, statuses: L.statuses}; }""")
    if lat["done"] is None:
        errors = page.locator("[data-testid=toast-body].error").all_inner_texts()
        raise RuntimeError(f"the run failed: {' | '.join(e.strip() for e in errors)}; statuses {lat['statuses']}")
    t0 = lat["t0"]

    def sec(t: float | None) -> float | None:
        return None if t is None else (t - t0) / 1000

    frame = lat["frameLoad"] if lat["frameLoad"] is not None else lat["frameSrc"]
    return {"first_frame": sec(frame), "first_src": sec(lat["frameSrc"]), "done": sec(lat["done"]),
            "app_first_frame": app_first_frame(lat["doneText"]), "status": lat["doneText"]}


def _fmt(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:6.2f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.steps < 1 or args.threads < 1:
        print("error: --runs, --steps and --threads must be >= 1", file=sys.stderr)
        return 2
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        print("error: /usr/bin/chromium is not installed (`make browser`)", file=sys.stderr)
        return 2

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.timeout))
    deadline = time.monotonic() + args.timeout
    from playwright.sync_api import TimeoutError as PageTimeout

    try:
        return _measure(args, chromium, deadline)
    except (Timeout, PageTimeout) as exc:
        print(f"error: timed out ({args.timeout:g} s overall): {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)


def _measure(args, chromium: Path, deadline: float) -> int:
    import torch
    from playwright.sync_api import sync_playwright

    from app.model_cache import resolve
    from app.settings import Settings
    from tests.app_server import env, free_port, running_app
    from tests.test_browser import ARGS

    torch.set_num_threads(args.threads)
    row = pick_example(args.tab, args.model, args.example)
    with tempfile.TemporaryDirectory(prefix="lb-latency-") as tmp, env(LATENTBRUSH_MODELS=None):
        settings = Settings(model=args.model, temp_dir=Path(tmp), port=free_port(), max_steps=5000,
                            time_limit=600, threads=args.threads)
        with running_app(settings) as (url, _, handlers):
            t = time.perf_counter()
            handlers.cache.get(resolve(args.model, settings))
            print(f"model {args.model} loaded in {time.perf_counter() - t:.1f} s; "
                  f"example {[Path(p).name for p in row]}", file=sys.stderr)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(chromium), args=ARGS)
                try:
                    page = browser.new_context(viewport={"width": 1000, "height": 1300}).new_page()
                    page.set_default_timeout(60_000)
                    page.goto(url, wait_until="load")
                    page.wait_for_selector("#scribble-run")
                    from app.ui import TAB_TITLES
                    page.get_by_role("tab", name=TAB_TITLES[args.tab]).click()
                    page.wait_for_selector(f"#{args.tab}-run")
                    load_example(page, args.tab, row, (deadline - time.monotonic()) * 1000)
                    set_steps(page, args.tab, args.steps)
                    page.evaluate(OBSERVER_JS, args.tab)

                    results = []
                    for i in range(args.runs + 1):
                        r = one_run(page, args.tab, deadline)
                        if f"step {args.steps} / {args.steps}" not in (r["status"] or ""):
                            print(f"warning: the final status does not show step {args.steps} / {args.steps}: "
                                  f"{r['status']!r}", file=sys.stderr)
                        label = "warm-up" if i == 0 else f"run {i}"
                        print(f"{label:>8}: first frame shown {_fmt(r['first_frame'])} s (src set "
                              f"{_fmt(r['first_src'])} s), Done shown {_fmt(r['done'])} s, app's first frame "
                              f"{_fmt(r['app_first_frame'])} s", flush=True)
                        if i:
                            results.append(r)
                finally:
                    browser.close()
    _summary(args, results)
    return 0


def _summary(args, results: list[dict]) -> None:
    print(f"\n{args.tab}, model {args.model}, {args.steps} steps, {args.threads} torch thread(s), "
          f"{len(results)} runs (after 1 warm-up), headless Chromium:")
    print(f"{'':42}{'median':>8}{'max':>8}")
    for key, label in (("first_frame", "click -> first frame shown (page)"),
                       ("done", 'click -> "Done" shown (page)'),
                       ("app_first_frame", "first frame (app's status, server-side)")):
        xs = [r[key] for r in results if r[key] is not None]
        if not xs:
            print(f"{label:42}{'n/a':>8}{'n/a':>8}")
            continue
        print(f"{label:42}{statistics.median(xs):7.2f}s{max(xs):7.2f}s")


if __name__ == "__main__":
    sys.exit(main())
