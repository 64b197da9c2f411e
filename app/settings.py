"""Server settings: one frozen dataclass, filled from the command line (`app.__main__`) or by tests."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = ROOT / "assets"
EXAMPLES_DIR = ASSETS_DIR / "examples"
PREFERRED_MODELS = ("cat64", "face64", "cat64-vanilla")
"""Bundled models listed first (in this order) when present; the first one present is the default."""
DOMAINS = ("cat", "face")
"""Picture domains a server maps to a model each (`--models cat=afhqcat,face=ffhq`); see app.domains."""
DEFAULT_DOMAIN_MODELS = (("cat", "cat64"), ("face", "face64"))
"""The bundled model standing for each domain when the operator names none (used when it is present)."""


def default_temp_dir() -> Path:
    """`$LATENTBRUSH_TMP`, else `<system temp>/latentbrush`: the app's own folder for per-run outputs."""
    return Path(os.environ.get("LATENTBRUSH_TMP", Path(tempfile.gettempdir()) / "latentbrush"))


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; per-user choices live in the UI, never here.

    model: default model (bundled name, catalogue name or a checkpoint path given by the operator);
        None picks the first of PREFERRED_MODELS present, else the first bundled model.
    max_steps: optimisation steps a single run may take (larger requests are clamped, with a warning).
    time_limit: seconds a single run may take; at the limit the run stops and returns the best result so far.
    concurrency: inversions running at the same time (shared by all tabs); queue_size: waiting requests.
    threads: torch CPU threads (None: 1 on a CPU, torch's default on a GPU). One thread per engine lane is the
        fast setting on a CPU: OpenMP teams started from several threads (a web server's worker threads) wait
        on each other; see engine/batched.py.
    workers: lanes of the batched engine, each one thread stepping its runs as one batch (None: one per CPU
        core divided by `threads` on a CPU, 1 on a GPU).
    temp_dir: the app's own folder; every run writes its downloads into a fresh sub-folder of `runs/`.
    heartbeat_s: how often Gradio checks that each client is still there (its GRADIO_HEARTBEAT_INTERVAL; Gradio's
        own default is 15 s): a client that goes away is noticed, its run stopped and its session released within
        about this long, even when the run streams frames rarely.
    frames_kept: streamed frames a run keeps for rewinding (older ones are thinned out evenly beyond that),
        which bounds a session's memory whatever steps / preview-every an API client asks for.
    models: (domain, model) pairs the operator gave (`--models`), domains from DOMAINS; None: the bundled
        DEFAULT_DOMAIN_MODELS that are present. Each tab starts on its domain's model (app.domains).
    max_sessions: visitors whose state Gradio keeps at once (its `state_session_capacity`, least recently used
        dropped first; ~650 KiB each here). A disconnected visitor's is dropped at once (app.gradio_fixes).
    files_max_age_s, cache_max_mb, runs_max_mb: the disk bound. Files in Gradio's cache (GRADIO_TEMP_DIR) and our
        run folders are deleted once older than files_max_age_s, and the oldest first while either folder holds
        more than its size in MiB (app.disk; nothing younger than `sweep_min_age_s`, which outlives any run).
    sweep_every_s: how often that check runs.
    """

    model: str | None = None
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    concurrency: int = 4
    queue_size: int = 16
    max_steps: int = 1000
    time_limit: float = 120.0
    threads: int | None = None
    workers: int | None = None
    temp_dir: Path = field(default_factory=default_temp_dir)
    max_file_size: str = "20mb"
    display_size: int = 256
    max_upload_pixels: int = 40_000_000
    max_upload_side: int = 2048
    runs_kept_per_session: int = 6
    frames_kept: int = 100
    heartbeat_s: float = 0.5
    model_cache_size: int = 3
    batching: bool = True
    max_batch: int = 8
    max_sessions: int = 200
    files_max_age_s: float = 6 * 3600.0
    cache_max_mb: float = 1024.0
    runs_max_mb: float = 1024.0
    sweep_every_s: float = 300.0
    models: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            problems.append(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not (isinstance(self.time_limit, (int, float)) and self.time_limit > 0):
            problems.append(f"time_limit must be a number of seconds > 0, got {self.time_limit!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            problems.append(f"concurrency must be a positive integer, got {self.concurrency!r}")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            problems.append(f"queue_size must be a positive integer, got {self.queue_size!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            problems.append(f"port must be in 0..65535, got {self.port!r}")
        if not (isinstance(self.heartbeat_s, (int, float)) and 0 < self.heartbeat_s <= 60):
            problems.append(f"heartbeat_s must be a number of seconds in (0, 60], got {self.heartbeat_s!r}")
        if not isinstance(self.frames_kept, int) or self.frames_kept < 2:
            problems.append(f"frames_kept must be an integer >= 2, got {self.frames_kept!r}")
        for name in ("max_sessions", "files_max_age_s", "cache_max_mb", "runs_max_mb", "sweep_every_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                problems.append(f"{name} must be a number > 0, got {value!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            problems.append(f"workers must be a positive integer, got {self.workers!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            problems.append(f"threads must be a positive integer, got {self.threads!r}")
        if self.device != "cpu" and not str(self.device).startswith("cuda"):
            problems.append(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.models is not None:
            problems.extend(_domain_model_problems(self.models))
        if problems:
            raise ValueError("; ".join(problems))
        object.__setattr__(self, "temp_dir", Path(self.temp_dir))
        if self.models is not None:
            object.__setattr__(self, "models", tuple((str(d), str(n)) for d, n in self.models))

    @property
    def torch_threads(self) -> int | None:
        """Threads to give torch (None: leave torch's choice)."""
        if self.threads is not None:
            return self.threads
        return 1 if self.device == "cpu" else None

    @property
    def engine_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        if self.device != "cpu":
            return 1
        return max(1, (os.cpu_count() or 1) // (self.torch_threads or 1))

    @property
    def gradio_env(self) -> dict[str, str]:
        """Environment variables Gradio reads at run time (set them before `launch`)."""
        return {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_HEARTBEAT_INTERVAL": f"{self.heartbeat_s:g}"}

    @property
    def sweep_min_age_s(self) -> float:
        """Files younger than this are never deleted for size: they may belong to a run still streaming."""
        return min(self.files_max_age_s, self.time_limit + 600.0)

    @property
    def runs_dir(self) -> Path:
        return self.temp_dir / "runs"

    @property
    def allowed_paths(self) -> list[str]:
        """What the server may serve besides Gradio's own cache: our temp folder and the example images."""
        return [str(self.temp_dir), str(EXAMPLES_DIR)]

    @property
    def operator_models(self) -> tuple[str, ...]:
        """Models named at start-up (`--model`, `--models`): offered and accepted even when they are paths."""
        names = ([self.model] if self.model else []) + [n for _, n in self.models or ()]
        return tuple(dict.fromkeys(names))

    def replace(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def _domain_model_problems(pairs: Any) -> list[str]:
    try:
        items = [tuple(p) for p in pairs]
    except TypeError:
        return [f"models must be (domain, model) pairs, got {pairs!r}"]
    problems = []
    seen: set[str] = set()
    for item in items:
        if len(item) != 2 or not all(isinstance(x, str) and x.strip() for x in item):
            problems.append(f"models: each entry must be a (domain, model name) pair of non-empty strings, "
                            f"got {item!r}")
            continue
        domain = item[0]
        if domain not in DOMAINS:
            problems.append(f"models: unknown domain {domain!r} (known domains: {', '.join(DOMAINS)})")
        elif domain in seen:
            problems.append(f"models: domain {domain!r} is given twice")
        seen.add(domain)
    return problems
