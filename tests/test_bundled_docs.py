"""The README's bundled-model table and `models/TRAINING.md` state the figures each shipped model's JSON records.

Every re-ship changes weights, JSON and prose by hand; these tests catch prose left describing older weights."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "assets" / "models"
BUNDLED = sorted(p.stem for p in MODELS.glob("*.json"))


def _config(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text(encoding="utf-8"))


def _readme_row(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Bundled models$.*?(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, "the README has a '## Bundled models' section"
    rows = [line for line in section.group(0).splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"one row for {name} in the README's bundled-models table, found {len(rows)}"
    return rows[0]


def _training_rows(name: str) -> dict[int, str]:
    """{images seen: row} of the shipped-checkpoint table in `name`'s section of models/TRAINING.md."""
    text = (ROOT / "models" / "TRAINING.md").read_text(encoding="utf-8")
    section = re.search(rf"^## {re.escape(name)} .*?(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, f"models/TRAINING.md has no section for {name}"
    # The section's first table is the shipped checkpoints; later tables (curves, arms) may also start with counts.
    table = re.search(r"^\|.*?(?=\n(?!\|)|\Z)", section.group(0), flags=re.M | re.S)
    assert table, f"models/TRAINING.md's {name} section has no table"
    rows = (re.match(r"\| ([\d,]+) \|", line) for line in table.group(0).splitlines())
    return {int(m.group(1).replace(",", "")): m.string for m in rows if m}


def test_every_bundled_model_has_figures_to_state() -> None:
    assert {"cat64", "face64", "cat64-vanilla", "grumpycat64"} <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_readme_row_states_the_recorded_images_seen_and_held_out_figures(name: str) -> None:
    cfg, row = _config(name), _readme_row(name)
    held = cfg["metrics"]["heldout_reconstruction"]
    assert f"{cfg['images_seen']:,}" in row
    assert f"PSNR {held['psnr_mean']:.2f} dB" in row
    assert f"SSIM {held['ssim_mean']:.3f}" in row


@pytest.mark.parametrize("name", BUNDLED)
def test_readme_row_states_the_recorded_sample_quality(name: str) -> None:
    cfg, row = _config(name), _readme_row(name)
    quality = cfg["metrics"]["sample_quality"]
    mobilenet = quality["mobilenet"]
    assert f"{mobilenet['kid']:.2g}" in row
    if name != "grumpycat64":  # its 10 held-out images make the FID meaningless, so the row leaves it out
        assert f"{round(mobilenet['fid'])} / {mobilenet['kid']:.2g}" in row
    if "dlib-face" in quality:
        dlib = quality["dlib-face"]
        # Written as plain decimals (0.000095, not 9.5e-05); read back, they must match to two significant figures.
        found = re.search(r"dlib ([0-9.e+-]+) / ([0-9.e+-]+)", row)
        assert found, row
        assert [float(v) for v in found.groups()] == [float(f"{dlib['fid']:.2g}"), float(f"{dlib['kid']:.2g}")]


@pytest.mark.parametrize("name", ["face64", "cat64"])
def test_training_record_ends_at_the_shipped_checkpoint(name: str) -> None:
    cfg = _config(name)
    rows = _training_rows(name)
    assert rows, f"no shipped-checkpoint rows for {name}"
    assert max(rows) == cfg["images_seen"], f"{name}: TRAINING.md's last checkpoint is {max(rows):,}"
    assert f"{cfg['metrics']['heldout_reconstruction']['psnr_mean']:.2f}" in rows[max(rows)]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_task_defaults_apply_and_are_explained(name: str) -> None:
    """A model's own task defaults are valid engine settings, and the README says why the model has them."""
    from engine.tasks import default_config

    own = _config(name).get("task_defaults", {})
    for task in own:
        default_config(task, arch=_config(name)["arch"], overrides=own)
    if own:
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        assert re.search(rf"`{re.escape(name)}`'s own defaults", text), f"README explains {name}'s task_defaults"


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "assets" / "gallery").glob("*.md")))
def test_readme_gallery_tables_repeat_the_gallery_files(name):
    """Each row of `assets/gallery/<model>.md` (what `python -m engine.gallery` wrote) is in the README as it is."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [ln for ln in (ROOT / "assets" / "gallery" / f"{name}.md").read_text(encoding="utf-8").splitlines()
            if ln.startswith("| ") and not ln.startswith("| task ")]
    assert rows
    missing = [r.split(" | ")[0] for r in rows if r not in text]
    assert not missing, f"README's {name} gallery table differs from assets/gallery/{name}.md for {missing}"
