"""app/uploads.py: every bad or awkward upload is either converted correctly or refused with UploadError.

All fixture files are built in code under tmp_path; nothing here needs a model, the network or a GPU.
Tests whose name starts with `test_bad_` each cover one bad input from the spec.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from app.uploads import (
    MIN_SIDE,
    LoadedImage,
    UploadError,
    check_mask_coverage,
    crop_box,
    fit_to_square,
    load_image,
    load_mask,
    safe_model_path,
)

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


# ------------------------------------------------------------------------------------------- helpers

def _noise(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _save(im: Image.Image, path: Path, fmt: str, **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def _forged_png(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose IHDR claims width x height (CRC fixed), so only the header is huge."""
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _refused(source, match: str, **kw) -> UploadError:
    with pytest.raises(UploadError, match=match) as info:
        load_image(source, **kw)
    msg = str(info.value)
    assert "Traceback" not in msg and msg[0].isupper() and msg.endswith("."), msg
    assert "Please" in msg, f"the message should say what to do: {msg}"
    return info.value


def _close(pixel, colour, tol: int = 40) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, colour))


def _check_rgb(loaded: LoadedImage, shape: tuple[int, int]) -> np.ndarray:
    assert isinstance(loaded, LoadedImage)
    rgb = loaded.rgb
    assert rgb.dtype == np.uint8 and rgb.shape == (*shape, 3) and rgb.flags["C_CONTIGUOUS"]
    return rgb


# ------------------------------------------------------------------------------ bad inputs: refused

def test_bad_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_bad_zero_byte_bytes():
    _refused(b"", "empty")


def test_bad_text_renamed_png(tmp_path):
    path = tmp_path / "photo.png"
    path.write_text("this is a shopping list, not a picture\n")
    err = _refused(str(path), "not an image")
    assert "photo.png" in str(err) and "PNG" in str(err)


def test_bad_truncated_png(tmp_path):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = (_save(_noise(), tmp_path / "full.png", "PNG")).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "incomplete|damaged")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bad_truncated_jpeg(tmp_path):
    data = (_save(_noise(), tmp_path / "full.jpg", "JPEG", quality=95)).read_bytes()
    _refused(data[: len(data) // 2], "incomplete|damaged")


def test_bad_one_pixel_image(tmp_path):
    err = _refused(_save(Image.new("RGB", (1, 1), RED), tmp_path / "dot.png", "PNG"), "too small")
    assert f"{MIN_SIDE}x{MIN_SIDE}" in str(err) and "1x1" in str(err)


def test_bad_decompression_bomb_pillow_limit(tmp_path):
    """20000x20000 (400 MP) is beyond Pillow's own bomb limit: DecompressionBombError is caught."""
    path = _forged_png(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 200
    _refused(path, "too large")


def test_bad_decompression_bomb_header_checked_before_decoding(tmp_path):
    """8000x6000 (48 MP) passes Pillow's limit but not ours; the forged file has no pixel data for that
    size, so reaching the limit message (not a 'damaged' one) proves the size was checked first."""
    err = _refused(_forged_png(tmp_path / "big.png", 8000, 6000), "megapixels")
    assert "8000x6000" in str(err) and "40.0 megapixels" in str(err)
    _refused(_noise(200, 100), "more than the limit", max_pixels=10_000)


def test_bad_nan_array():
    arr = np.full((32, 32, 3), 0.5, dtype=np.float32)
    arr[3, 4, 1] = np.nan
    _refused(arr, "NaN")
    arr[3, 4, 1] = np.inf
    _refused(arr, "NaN or infinity")


@pytest.mark.parametrize("shape", [(32, 32, 2), (2, 32, 32, 3), (32,)])
def test_bad_array_shape(shape):
    _refused(np.zeros(shape, dtype=np.uint8), "shape")


def test_bad_array_dtype():
    _refused(np.array([["a"] * 32] * 32), "unsupported type")


def test_bad_tiny_array():
    _refused(np.zeros((8, 200, 3), dtype=np.uint8), "too small")


def test_bad_long_thin_image():
    _refused(Image.new("RGB", (4000, 20)), "too long and thin", resize_to_max_side=2048)


def test_bad_missing_file_and_none(tmp_path):
    _refused(tmp_path / "nope.png", "could not be found")
    _refused(None, "No image")


def test_bad_postscript_is_not_decoded(tmp_path):
    """EPS would be rendered by Ghostscript: uploads only try the PNG/JPEG/GIF/WebP/BMP/TIFF decoders."""
    path = tmp_path / "drawing.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n")
    _refused(path, "not an image")


def test_bad_random_bytes_with_png_signature():
    _refused(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "damaged|not an image|could not be read")


@pytest.mark.filterwarnings("ignore:(Truncated File Read|Corrupt EXIF data):UserWarning")  # Pillow, expected
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_bad_corrupted_bytes_never_escape_as_other_errors(fmt):
    """Flip/cut bytes all over a small file: the result is an image or an UploadError, nothing else."""
    buf = io.BytesIO()
    _noise(24, 20).save(buf, fmt)
    data = buf.getvalue()
    rng = np.random.default_rng(len(data))
    for trial in range(40):
        corrupt = bytearray(data)
        for pos in rng.integers(0, len(corrupt), size=1 + trial % 4):
            corrupt[pos] = int(rng.integers(0, 256))
        if trial % 5 == 0:
            corrupt = corrupt[: int(rng.integers(1, len(corrupt)))]
        try:
            out = load_image(bytes(corrupt))
        except UploadError as e:
            assert "Please" in str(e)
        else:
            assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3


# ---------------------------------------------------------------------- bad inputs: converted safely

def test_bad_16bit_png_scaled_not_clipped(tmp_path):
    arr = np.zeros((32, 32), dtype=np.uint16)
    arr[:, 8:16] = 32768           # mid-grey
    arr[:, 16:24] = 65535          # white
    arr[:, 24:] = 16384            # quarter grey
    im = Image.fromarray(arr)
    assert im.mode == "I;16"
    path = _save(im, tmp_path / "sixteen.png", "PNG")
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    rgb = _check_rgb(loaded, (32, 32))
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert abs(int(rgb[0, 10, 0]) - 128) <= 1, rgb[0, 10]
    assert rgb[0, 20].tolist() == [255, 255, 255]
    assert abs(int(rgb[0, 30, 0]) - 64) <= 1
    assert any("16-bit" in n for n in loaded.notices)


def test_bad_16bit_array():
    arr = np.full((20, 20, 3), 32768, dtype=np.uint16)
    assert abs(int(load_image(arr).rgb[0, 0, 0]) - 128) <= 1


def test_bad_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), tmp_path / "print.jpg", "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    loaded = load_image(path)
    rgb = _check_rgb(loaded, (32, 32))
    assert _close(rgb[16, 16], RED), rgb[16, 16]
    assert any("CMYK" in n for n in loaded.notices)


def test_bad_palette_gif(tmp_path):
    im = Image.new("RGB", (32, 32), BLUE).convert("P", palette=Image.Palette.ADAPTIVE)
    path = _save(im, tmp_path / "pal.gif", "GIF")
    rgb = _check_rgb(load_image(path), (32, 32))
    assert _close(rgb[5, 5], BLUE, tol=10)


def test_bad_palette_with_transparency(tmp_path):
    im = Image.new("P", (32, 32), 0)
    im.putpalette([0, 0, 255] + [255, 0, 0] * 255)
    im.paste(1, (0, 0, 16, 32))
    path = _save(im, tmp_path / "trans.png", "PNG", transparency=0)   # index 0 (blue) transparent
    loaded = load_image(path)
    rgb = _check_rgb(loaded, (32, 32))
    assert _close(rgb[5, 5], RED, 0) and rgb[5, 25].tolist() == [255, 255, 255]
    assert any("white" in n for n in loaded.notices)


def test_bad_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    loaded = load_image(path)
    rgb = _check_rgb(loaded, (32, 32))
    assert _close(rgb[16, 16], RED, tol=10), rgb[16, 16]
    assert any("animated" in n and "first frame" in n for n in loaded.notices)
    assert any("animated" in n for n in load_image(path.read_bytes()).notices)


def _exif_jpeg(path: Path, size: tuple[int, int], orientation: int) -> Path:
    """Stored image: blue, with a red block in the stored top-left corner."""
    im = Image.new("RGB", size, BLUE)
    im.paste(RED, (0, 0, size[0] // 4, size[1] // 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(im, path, "JPEG", exif=exif.tobytes(), quality=95)


def test_bad_exif_rotated_jpeg(tmp_path):
    """Orientation 6 = 'rotate 90 degrees clockwise to display': 40x20 stored -> 20x40 upright, and the
    stored top-left red block ends up top-right."""
    path = _exif_jpeg(tmp_path / "phone.jpg", (40, 20), 6)
    loaded = load_image(path)
    rgb = _check_rgb(loaded, (40, 20))     # height 40, width 20
    assert _close(rgb[2, -3], RED), rgb[2, -3]
    assert _close(rgb[2, 2], BLUE) and _close(rgb[-3, -3], BLUE)
    assert any("orientation" in n for n in loaded.notices)


def test_bad_exif_rotated_large_jpeg_is_drafted_and_downscaled(tmp_path):
    path = _exif_jpeg(tmp_path / "big.jpg", (1200, 800), 6)
    loaded = load_image(path, resize_to_max_side=128)
    rgb = _check_rgb(loaded, (128, 85))
    assert _close(rgb[3, -4], RED) and _close(rgb[-4, 3], BLUE)
    assert any("downscaled from 800x1200 to 85x128" in n for n in loaded.notices), loaded.notices


def test_bad_rgba_transparency_on_white(tmp_path):
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 16, 32))
    im.paste((0, 0, 255, 128), (16, 0, 24, 32))
    loaded = load_image(_save(im, tmp_path / "cutout.png", "PNG"))
    rgb = _check_rgb(loaded, (32, 32))
    assert rgb[5, 5].tolist() == [255, 0, 0]
    assert _close(rgb[5, 20], (127, 127, 255), tol=2)      # half-transparent blue over white
    assert rgb[5, 28].tolist() == [255, 255, 255]          # fully transparent -> white, not black
    assert any("white" in n for n in loaded.notices)


def test_opaque_rgba_has_no_notice():
    loaded = load_image(Image.new("RGBA", (20, 20), (10, 20, 30, 255)))
    assert loaded.rgb[0, 0].tolist() == [10, 20, 30] and loaded.notices == ()


@pytest.mark.parametrize("mode,colour", [("L", 100), ("LA", (100, 255)), ("1", 1)])
def test_bad_grayscale_modes(tmp_path, mode, colour):
    path = _save(Image.new(mode, (24, 24), colour), tmp_path / f"g{mode}.png", "PNG")
    rgb = _check_rgb(load_image(path), (24, 24))
    expected = 255 if mode == "1" else 100
    assert rgb[3, 3].tolist() == [expected] * 3


@pytest.mark.parametrize("arr,expected", [
    (np.full((20, 30), 77, dtype=np.uint8), [77, 77, 77]),
    (np.full((20, 30, 1), 77, dtype=np.uint8), [77, 77, 77]),
    (np.full((20, 30, 3), (1, 2, 3), dtype=np.uint8), [1, 2, 3]),
    (np.full((20, 30, 4), (0, 0, 0, 0), dtype=np.uint8), [255, 255, 255]),
    (np.full((20, 30, 3), 0.5, dtype=np.float32), [128, 128, 128]),
    (np.full((20, 30, 3), 200.0, dtype=np.float64), [200, 200, 200]),
    (np.ones((20, 30), dtype=bool), [255, 255, 255]),
    (np.full((20, 30, 3), 100, dtype=np.int64), [100, 100, 100]),
], ids=["HxW-u8", "HxWx1", "HxWx3", "HxWx4-transparent", "float01", "float0-255", "bool", "int64"])
def test_bad_numpy_arrays(arr, expected):
    rgb = _check_rgb(load_image(arr), (20, 30))
    assert rgb[7, 9].tolist() == expected


def test_bad_float_out_of_range_clipped():
    arr = np.full((20, 20, 3), 300.0)
    arr[0, 0] = -5.0
    loaded = load_image(arr)
    assert loaded.rgb[0, 0].tolist() == [0, 0, 0] and loaded.rgb[1, 1].tolist() == [255, 255, 255]
    assert any("clipped" in n for n in loaded.notices)


def test_bad_large_image_downscaled(tmp_path):
    path = _save(_noise(300, 150), tmp_path / "wide.png", "PNG")
    loaded = load_image(path, resize_to_max_side=64)
    _check_rgb(loaded, (32, 64))
    assert loaded.notices == ("downscaled from 300x150 to 64x32 (long side limited to 64 pixels)",)


def test_small_enough_image_is_untouched(tmp_path):
    im = _noise(64, 48)
    for source in (im, _save(im, tmp_path / "ok.png", "PNG"), (tmp_path / "ok.png").read_bytes(),
                   str(tmp_path / "ok.png"), np.asarray(im)):
        loaded = load_image(source)
        assert loaded.notices == () and np.array_equal(loaded.rgb, np.asarray(im))


def test_options_are_keyword_only_and_validated():
    with pytest.raises(TypeError):
        load_image(np.zeros((20, 20, 3), np.uint8), 100)  # type: ignore[misc]
    with pytest.raises(ValueError):
        load_image(np.zeros((20, 20, 3), np.uint8), max_pixels=0)


# ---------------------------------------------------------------------------------------------- masks

def test_mask_rgba_layer_alpha_is_painted():
    layer = np.zeros((20, 30, 4), dtype=np.uint8)
    layer[5:10, 5:10] = (0, 0, 0, 255)      # black brush: still painted (alpha)
    layer[0, 0] = (0, 0, 0, 1)              # faint antialiased edge counts as painted
    mask = load_mask(layer, size=(20, 30))
    assert mask.dtype == np.bool_ and mask.shape == (20, 30)
    assert mask[5:10, 5:10].all() and mask[0, 0] and mask.sum() == 26


def test_mask_from_pil_rgba_and_file(tmp_path):
    im = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 10, 20))
    path = _save(im, tmp_path / "layer.png", "PNG")
    for src in (im, path, path.read_bytes()):
        mask = load_mask(src, size=(20, 30))
        assert mask[:, :10].all() and not mask[:, 10:].any()


def test_mask_grayscale_threshold_is_L_over_127():
    gray = np.array([[0, 127, 128, 255]] * 4, dtype=np.uint8)
    assert load_mask(gray, size=(4, 4))[0].tolist() == [False, False, True, True]
    rgb = Image.fromarray(np.stack([gray] * 3, axis=2))
    assert load_mask(rgb, size=(4, 4))[0].tolist() == [False, False, True, True]


def test_mask_non_binary_values_thresholded_at_half():
    floats = np.array([[0.0, 0.49, 0.51, 1.0]] * 4)
    assert load_mask(floats, size=(4, 4))[0].tolist() == [False, False, True, True]
    floats255 = floats * 255
    assert load_mask(floats255, size=(4, 4))[0].tolist() == [False, False, True, True]
    binary = np.array([[0, 1, 0, 1]] * 4, dtype=np.uint8)   # 0/1 uint8 masks are binary, not 'dark'
    assert load_mask(binary, size=(4, 4))[0].tolist() == [False, True, False, True]
    assert load_mask(binary.astype(bool), size=(4, 4))[0].tolist() == [False, True, False, True]


def test_mask_none_is_empty():
    assert not load_mask(None, size=(5, 6)).any()


def test_mask_wrong_size_same_aspect_resized_nearest():
    small = np.zeros((10, 15), dtype=bool)
    small[:, :5] = True
    mask = load_mask(small, size=(40, 60))
    assert mask.shape == (40, 60) and mask[:, :20].all() and not mask[:, 20:].any()
    assert load_mask(np.ones((201, 300), bool), size=(200, 300)).shape == (200, 300)   # 0.5 % off: ok
    with pytest.raises(UploadError):
        load_mask(np.ones((203, 300), bool), size=(200, 300))                       # 1.5 % off


def test_mask_wrong_size_other_aspect_refused():
    with pytest.raises(UploadError, match="30x20 pixels but the image is 64x64") as info:
        load_mask(np.zeros((20, 30), dtype=bool), size=(64, 64))
    assert "Please" in str(info.value)


def test_mask_bad_data_refused(tmp_path):
    with pytest.raises(UploadError, match="NaN"):
        load_mask(np.full((4, 4), np.nan), size=(4, 4))
    with pytest.raises(UploadError, match="shape"):
        load_mask(np.zeros((4, 4, 2)), size=(4, 4))
    bad = tmp_path / "mask.png"
    bad.write_text("not a mask")
    with pytest.raises(UploadError, match="not an image"):
        load_mask(bad, size=(4, 4))


def test_mask_coverage_empty():
    with pytest.raises(UploadError, match="Nothing is painted.*paint the region to fill in"):
        check_mask_coverage(np.zeros((10, 10), bool), what="fill in")


def test_mask_coverage_full():
    almost = np.ones((100, 100), bool)
    almost[0, :40] = False                   # 99.6 % painted
    with pytest.raises(UploadError, match="covers 99.6%.*paint only the region to recolour"):
        check_mask_coverage(almost, what="recolour")
    almost[0, :60] = False                   # 99.4 %: fine
    check_mask_coverage(almost, what="recolour")


# ------------------------------------------------------------------------------------ square / crop

def test_fit_to_square_center_crop():
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, 80:560] = 200                     # the central 480 columns survive the crop
    out, notice = fit_to_square(rgb, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert notice == "centre-cropped 640x480 to 480x480 and resized to 64x64"
    assert abs(int(out.mean()) - 200) <= 2


def test_fit_to_square_pad():
    rgb = np.zeros((480, 640, 3), np.uint8)
    out, notice = fit_to_square(rgb, 64, mode="pad")
    assert out.shape == (64, 64, 3)
    assert notice == "resized 640x480 to 64x48 and padded to 64x64 with white bars"
    assert out[0, 0].tolist() == [255] * 3 and out[32, 32].tolist() == [0] * 3


def test_fit_to_square_noop_and_contract():
    rgb = np.zeros((64, 64, 3), np.uint8)
    assert fit_to_square(rgb, 64)[1] == "already 64x64; used as is"
    with pytest.raises(ValueError):
        fit_to_square(rgb, 64, mode="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fit_to_square(rgb.astype(np.float32), 64)


def test_crop_box_valid_and_invalid():
    rgb = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(80, 100, 3).astype(np.uint8)
    out = crop_box(rgb, box=(10, 20, 60.4, 70))
    assert out.shape == (50, 50, 3) and np.array_equal(out, rgb[20:70, 10:60])
    with pytest.raises(UploadError, match="outside the 100x80 image"):
        crop_box(rgb, box=(-1, 0, 50, 50))
    with pytest.raises(UploadError, match="at least 16x16"):
        crop_box(rgb, box=(50, 50, 40, 60))
    with pytest.raises(UploadError, match="could not be read"):
        crop_box(rgb, box=(0, 0, float("nan"), 50))
    with pytest.raises(UploadError, match="could not be read"):
        crop_box(rgb, box=(0, 0, 50))


# ------------------------------------------------------------------------------------- model paths

@pytest.fixture
def models_dir(tmp_path):
    d = tmp_path / "assets" / "models"
    d.mkdir(parents=True)
    (d / "cat64.safetensors").write_bytes(b"x")
    (d / "cat64.json").write_text("{}")
    (tmp_path / "secret.pt").write_bytes(b"x")
    return d


def test_model_path_inside_allowed(models_dir):
    assert safe_model_path(str(models_dir / "cat64.safetensors"), allowed_dirs=[models_dir]) == \
        (models_dir / "cat64.safetensors").resolve()


def test_model_path_outside_refused(models_dir, tmp_path):
    with pytest.raises(UploadError, match="outside the folders"):
        safe_model_path(str(tmp_path / "secret.pt"), allowed_dirs=[models_dir])
    with pytest.raises(UploadError, match="outside the folders"):
        safe_model_path(str(models_dir / ".." / ".." / "secret.pt"), allowed_dirs=[models_dir])


def test_model_path_symlink_escape_refused(models_dir, tmp_path):
    link = models_dir / "innocent.pt"
    link.symlink_to(tmp_path / "secret.pt")
    with pytest.raises(UploadError, match="outside the folders"):
        safe_model_path(str(link), allowed_dirs=[models_dir])


def test_model_path_bad_suffix_and_missing(models_dir):
    with pytest.raises(UploadError, match="not a model file"):
        safe_model_path("/etc/passwd", allowed_dirs=[models_dir])
    (models_dir / "notes.txt").write_text("x")
    (models_dir / "sneaky.pt").symlink_to(models_dir / "notes.txt")
    with pytest.raises(UploadError, match="not a model file"):
        safe_model_path(str(models_dir / "sneaky.pt"), allowed_dirs=[models_dir])
    with pytest.raises(UploadError, match="No model file 'gone.pkl'"):
        safe_model_path(str(models_dir / "gone.pkl"), allowed_dirs=[models_dir])
    with pytest.raises(UploadError, match="No model file was given"):
        safe_model_path("  ", allowed_dirs=[models_dir])
    with pytest.raises(UploadError, match="not valid"):
        safe_model_path("a\x00b.pt", allowed_dirs=[models_dir])
