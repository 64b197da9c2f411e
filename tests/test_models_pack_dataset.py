"""`models.pack_dataset`: the packed archive unpacks to the same names (so the same hold-out split), at the asked
resolution, with JPEG sources within JPEG error and other formats bit-exact."""
import tarfile

import numpy as np
import pytest
from PIL import Image

from models.dataset import load_square, split_files
from models.pack_dataset import main, pack_folder


def _smooth_image(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    # Smooth content, like a photo: white noise would make any JPEG look broken.
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        _smooth_image(rng, 160, 128).save(src / f"face{i:02d}.jpg", quality=98)
    _smooth_image(rng, 128, 128).save(src / "grumpy.png")
    (src / "README.txt").write_text("not an image")
    return src


def test_unpacks_to_the_same_names_split_and_resolution(photo_folder, tmp_path):
    out = tmp_path / "dev" / "faces.tgz"
    assert pack_folder(photo_folder, out, resolution=32) == 13
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked"
    assert sorted(p.name for p in unpacked.iterdir()) == sorted(p.name for p in photo_folder.iterdir()
                                                               if p.suffix != ".txt")
    # The trainer's hold-out split reads names only, so the device run holds out the same photos.
    names = lambda files: [p.name for p in files]  # noqa: E731
    assert [names(s) for s in split_files(unpacked, holdout_fraction=0.3)] == \
        [names(s) for s in split_files(photo_folder, holdout_fraction=0.3)]
    for src in sorted(photo_folder.glob("*.jpg")):
        with Image.open(unpacked / src.name) as im:
            assert im.format == "JPEG" and im.size == (32, 32)
        err = np.abs(load_square(unpacked / src.name, 32).astype(int) - load_square(src, 32).astype(int))
        assert err.mean() < 3.0
    with Image.open(unpacked / "grumpy.png") as im:
        assert im.format == "PNG"
    np.testing.assert_array_equal(load_square(unpacked / "grumpy.png", 32), load_square(photo_folder / "grumpy.png", 32))


def test_jpeg_keeps_full_colour_resolution(tmp_path):
    # A one-pixel red/green checkerboard survives only without chroma subsampling.
    src = tmp_path / "src"
    src.mkdir()
    checker = (np.indices((16, 16)).sum(0) % 2).astype(bool)
    img = np.where(checker[..., None], [255, 0, 0], [0, 255, 0]).astype(np.uint8)
    Image.fromarray(img).save(src / "c.jpg", quality=100, subsampling=0)
    pack_folder(src, tmp_path / "c.tgz", resolution=16)
    with tarfile.open(tmp_path / "c.tgz") as tar:
        tar.extractall(tmp_path / "u", filter="data")
    got = load_square(tmp_path / "u" / "c.jpg", 16).astype(int)
    assert np.abs(got - load_square(src / "c.jpg", 16).astype(int)).mean() < 20


def test_cli_reports_and_refuses_an_empty_folder(photo_folder, tmp_path, capsys):
    main([str(photo_folder), "--resolution", "16", "--out", str(tmp_path / "p.tgz")])
    assert "13 images at 16 px" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        main([str(empty), "--out", str(tmp_path / "e.tgz")])
