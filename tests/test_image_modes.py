"""Every image mode Pillow reads is scaled onto [-1, 1] by its own range, never clipped.

Each case is a gradient over its mode's whole range (0..255, 0..65535, the int32 range, [0, 1]
floats), 64 pixels wide and read at 64x64, so that no resizing blurs it: the loaded pixels must
run from -1 to 1 in 64 even steps, and the folder must say what it converted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from archsearch.data import load_data
from archsearch.data.convert import to_unsigned
from archsearch.data.images import convert_image
from archsearch.schema.data import data_adapter

SIZE = 64
RAMP = np.arange(SIZE) / (SIZE - 1)                      # 0 .. 1 across the width
EXPECTED = np.rint(RAMP * 255).astype(np.uint8)          # the 8-bit pixels every mode must give


def ramp(lo: float, hi: float, dtype) -> np.ndarray:
    """A (SIZE, SIZE) horizontal gradient from lo to hi, in `dtype`."""
    row = lo + RAMP * (hi - lo)
    if np.issubdtype(np.dtype(dtype), np.integer):
        row = np.rint(row)
    return np.tile(row, (SIZE, 1)).astype(dtype)


def gray(mode: str) -> Image.Image:
    """A full-range gradient in a gray mode."""
    if mode == "L":
        return Image.fromarray(ramp(0, 255, np.uint8))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        dtype = ">u2" if mode == "I;16B" else "<u2"
        image = Image.fromarray(ramp(0, 65535, dtype))
        return image if image.mode == mode else Image.frombytes(mode, image.size, ramp(0, 65535, "<u2").tobytes())
    if mode == "I":
        return Image.fromarray(ramp(-(2**31), 2**31 - 1, np.int64).astype(np.int32))
    if mode == "F":
        return Image.fromarray(ramp(0.0, 1.0, np.float32))
    if mode == "LA":
        return Image.merge("LA", (gray("L"), Image.new("L", (SIZE, SIZE), 77)))
    raise KeyError(mode)


HIGH_DEPTH = ["I;16", "I;16B", "I;16L", "I;16N", "I", "F"]


@pytest.mark.parametrize("mode", ["L", "LA", *HIGH_DEPTH])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_gray_mode_spans_its_whole_range(mode, channels):
    image = gray(mode)
    assert image.mode == mode
    pixels, how = convert_image(image, SIZE, channels)
    assert pixels.dtype == np.uint8
    planes = [pixels] if channels == 1 else [pixels[..., c] for c in range(3)]
    for plane in planes:
        np.testing.assert_array_equal(plane, np.tile(EXPECTED, (SIZE, 1)))
    if mode in HIGH_DEPTH:
        assert "scaled from" in how[1] and ("expanded to RGB" in how[1]) == (channels == 3)


def test_the_16_bit_range_is_named():
    assert convert_image(gray("I;16"), SIZE, 1)[1] == ("16-bit grayscale", "scaled from 0..65535 to 8 bits")
    assert convert_image(gray("F"), SIZE, 1)[1] == ("32-bit float grayscale", "scaled from [0, 1] to 8 bits")
    assert convert_image(gray("L"), SIZE, 1)[1] is None  # nothing to convert


def test_floats_with_negative_values_are_read_as_minus_one_to_one():
    pixels, how = convert_image(Image.fromarray(ramp(-1.0, 1.0, np.float32)), SIZE, 1)
    np.testing.assert_array_equal(pixels[0], EXPECTED)
    assert how[1] == "scaled from [-1, 1] to 8 bits"


@pytest.mark.parametrize("values", [(0.0, 4.0), (-3.0, 1.0), (0.0, float("nan"))])
def test_floats_outside_both_ranges_are_refused_not_clipped(values):
    array = ramp(0.0, 1.0, np.float32)
    array[0, :2] = values
    with pytest.raises(ValueError, match="float image"):
        convert_image(Image.fromarray(array), SIZE, 1)


def color_ramp() -> Image.Image:
    """RGB: red rises, green falls, blue is a constant 40."""
    r, g = ramp(0, 255, np.uint8), ramp(255, 0, np.uint8)
    return Image.fromarray(np.stack([r, g, np.full_like(r, 40)], axis=-1))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA", "1", "La"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_8_bit_mode_matches_pillows_own_conversion(mode, channels):
    source = color_ramp()
    image = gray("LA").convert("La") if mode == "La" else source.convert(mode)
    assert image.mode == mode
    pixels, how = convert_image(image, SIZE, channels)
    via = {"La": "LA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}.get(mode)
    reference = (image.convert(via) if via else image).convert("L" if channels == 1 else "RGB")
    np.testing.assert_array_equal(pixels, np.asarray(reference))
    assert 0 < pixels.mean() < 255 and pixels.min() < 128 < pixels.max()  # neither saturated nor flat
    if mode == "RGB" and channels == 3:
        assert how is None  # nothing to convert
    else:
        assert how is not None and ("alpha dropped" in how[1]) == (mode in ("RGBA", "RGBa", "PA", "La"))


# --------------------------------------------------------------------------- through a folder, from files

FILES = [  # (mode, file suffix) that Pillow can write and read back in that mode
    ("L", ".png"), ("LA", ".png"), ("1", ".png"), ("P", ".png"), ("RGB", ".png"), ("RGBA", ".png"), ("I;16", ".png"),
    ("I;16", ".tif"), ("I;16B", ".tif"), ("I", ".tif"), ("F", ".tif"), ("CMYK", ".tif"), ("YCbCr", ".tif"),
    ("LAB", ".tif"), ("PA", ".tif"), ("L", ".jpg"), ("RGB", ".jpg"), ("CMYK", ".jpg"), ("RGB", ".bmp"),
    ("RGB", ".webp"),
]


def write(mode: str, path) -> Image.Image:
    image = gray(mode) if mode in ("L", "LA", *HIGH_DEPTH) else color_ramp().convert(mode)
    options = {"quality": 100} if path.suffix == ".jpg" else {"lossless": True} if path.suffix == ".webp" else {}
    image.save(path, **options)
    with Image.open(path) as back:
        assert back.mode == mode or (mode == "I;16B" and back.mode.startswith("I;16")), (mode, back.mode)
    return image


def folder_data(folder, channels: int):
    cfg = data_adapter.validate_python({"source": "folder", "path": str(folder), "channels": channels,
                                        "image_size": SIZE, "val_fraction": 0.5})
    data = load_data(cfg)
    return torch.cat([data.train, data.val]), data


@pytest.mark.parametrize("mode,suffix", FILES, ids=[f"{m}{s}" for m, s in FILES])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_folder_of_each_mode_loads_into_minus_one_to_one(tmp_path, mode, suffix, channels):
    for name in ("a", "b"):
        image = write(mode, tmp_path / f"{name}{suffix}")
    images, data = folder_data(tmp_path, channels)
    assert images.shape == (2, channels, SIZE, SIZE) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    if mode in ("L", "LA", *HIGH_DEPTH) and suffix != ".jpg":  # exact gradients: every 8-bit level from -1 to 1
        np.testing.assert_array_equal(to_unsigned(images)[0, 0].numpy(), np.tile(EXPECTED, (SIZE, 1)))
        assert images.min() == -1 and images.max() == 1
    else:  # the file's own 8-bit colors, converted as Pillow converts them
        with Image.open(tmp_path / f"a{suffix}") as back:
            via = {"CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB"}.get(back.mode)
            expected = np.asarray((back.convert(via) if via else back).convert("L" if channels == 1 else "RGB"))
        got = to_unsigned(images)[0].numpy()
        got = got[0] if channels == 1 else got.transpose(1, 2, 0)
        np.testing.assert_array_equal(got, expected)
    white = (images > 0.99).float().mean().item()
    assert mode == "1" or white < 0.1, f"{white:.1%} white pixels: clipped, not scaled"
    notes = data.describe()[2:]
    if mode not in ("L", "RGB") or (mode == "L") != (channels == 1):
        assert notes and notes[0].startswith("2 "), notes  # says what it converted
    if mode in HIGH_DEPTH:
        assert "scaled from" in notes[0] and "converted to grayscale" not in notes[0], notes


def test_a_16_bit_png_folder_is_not_white(tmp_path):
    """The reported case: full-range 16-bit grayscale PNGs were 99.6% white pixels."""
    for name in ("a", "b", "c"):
        Image.fromarray(ramp(0, 65535, np.uint16)).save(tmp_path / f"{name}.png")
    images, data = folder_data(tmp_path, 1)
    assert abs(images.mean().item()) < 0.02  # a ramp over the whole range averages mid-gray
    assert data.describe()[2] == "3 16-bit grayscale images scaled from 0..65535 to 8 bits"


def test_an_out_of_range_float_tiff_is_skipped_with_its_range(tmp_path):
    write("F", tmp_path / "good.tif")
    write("F", tmp_path / "good2.tif")
    Image.fromarray(ramp(0.0, 300.0, np.float32)).save(tmp_path / "raw.tif")
    _, data = folder_data(tmp_path, 1)
    assert [name for name, _ in data.skipped] == ["raw.tif"]
    assert "outside [0, 1]" in data.skipped[0][1] and "300" in data.skipped[0][1]
