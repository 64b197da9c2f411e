"""Blind grids for counting broken samples: equal shares of each source at shuffled places, a key kept apart from
the grids, and the tally of raters' marks."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.blind_grids import CELLS, REAL, main, make_grids, shares, tally
from models.train import export
from tests.tiny import tiny_trainer


def test_shares_are_equal_per_grid_and_even_over_grids():
    plan = shares(3, 3)
    assert all(sum(p) == CELLS for p in plan)
    assert [sum(p[s] for p in plan) for s in range(3)] == [64, 64, 64]  # 21/21/22 rotated
    assert shares(2, 1) == [[32, 32]]


def test_make_grids_places_every_source_where_the_key_says(tmp_path):
    model = export(tiny_trainer(), tmp_path / "m.safetensors", licence="test", provenance="unit test", name="m",
                   dtype=torch.float32)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(70):  # flat photos, far from any sample: each cell tells which source it came from
        Image.fromarray(np.full((64, 64, 3), 3 + i, np.uint8)).save(data / f"p{i}.png")
    key = make_grids([str(model)], data, grids=2, out=tmp_path / "blind", seed=1, holdout_fraction=0.0)
    assert sorted(key) == ["A", "B"] and not (tmp_path / "blind" / "key.json").exists()
    assert json.loads((tmp_path / "blind_key.json").read_text()) == key
    assert "BROKEN" in (tmp_path / "blind" / "STANDARD.txt").read_text()
    photos = [name for g in key.values() for source, name in g if source == REAL]
    assert len(photos) == 64 and len(set(photos)) == 64  # 32 a grid, none shown twice
    for letter, cells in key.items():
        grid = np.asarray(Image.open(tmp_path / "blind" / f"grid_{letter}.png"))
        assert grid.shape == (1024, 1024, 3)
        assert [c[0] for c in cells].count(REAL) == 32
        for i, (source, ident) in enumerate(cells):
            r, c = divmod(i, 8)
            cell = grid[r * 128:(r + 1) * 128:2, c * 128:(c + 1) * 128:2]
            if source == REAL:
                assert (cell == 3 + int(ident[1:-4])).all()
            else:
                assert cell.std() > 1  # a sample, not a flat photo
    # the same seed draws the same grids; another seed shuffles them
    again = make_grids([str(model)], data, grids=2, out=tmp_path / "again", seed=1, holdout_fraction=0.0)
    other = make_grids([str(model)], data, grids=2, out=tmp_path / "other", seed=2, holdout_fraction=0.0)
    assert again == key and other != key


def test_tally_counts_marks_per_source():
    key = {"A": [["m", 0], [REAL, "a.png"]] * 32, "B": [[REAL, "b.png"], ["m", 1]] * 32}
    ratings = {"r1": {"A": [0, 2, 1]}, "r2": {"A": [0], "B": [1, 3, 5, 7]}}
    t = tally(key, ratings)
    assert t["m"]["broken"] == 1 + 2 + 4 and t["m"]["cells"] == 96
    assert t[REAL]["broken"] == 1 and t[REAL]["cells"] == 96
    assert t["m"]["stderr"] == pytest.approx((7 / 96 * (1 - 7 / 96) / 96) ** 0.5)
    with pytest.raises(ValueError, match="not in the key"):
        tally(key, {"r": {"Z": [1]}})
    with pytest.raises(ValueError, match="0..63"):
        tally(key, {"r": {"A": [64]}})


def test_tally_cli(tmp_path, capsys):
    (tmp_path / "k.json").write_text(json.dumps({"A": [["m", 0], [REAL, "a.png"]] * 32}))
    (tmp_path / "r.json").write_text(json.dumps({"r1": {"A": [0, 2]}}))
    assert main(["tally", str(tmp_path / "k.json"), str(tmp_path / "r.json")]) == 0
    assert "m: 2 broken of 32 rated cells, 6.2%" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"r1": {"Q": [0]}}))
    assert main(["tally", str(tmp_path / "k.json"), str(tmp_path / "bad.json")]) == 2
