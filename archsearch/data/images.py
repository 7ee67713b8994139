"""One image file, of any mode Pillow reads, as 8-bit pixels at the configured size and channels.

    result = decode_file(path, size=32, channels=3)   # (uint8 (32, 32, 3) array, how it was converted), or why not
    notes = conversion_notes({how: count, ...})      # ["12 16-bit grayscale images scaled from 0..65535 to 8 bits"]

Every mode is brought onto the same 8-bit scale, by its own range, never clipped:

    1, L, LA, La, P, PA          gray or palette, 8 bits; Pillow converts (a palette by its colors)
    RGB, RGBA, RGBa, RGBX        8-bit color; alpha and padding are dropped
    CMYK, YCbCr, LAB, HSV        8-bit color in another space: converted to RGB by Pillow first
    I;16, I;16L, I;16B, I;16N    16-bit gray: 0..65535 onto 0..255 (a 16-bit PNG is one)
    I                            32-bit integer gray: 0..2^b - 1 when the file stores b <= 16 bits
                                 per pixel (an older Pillow's 16-bit PNG, a 16-bit TIFF), else
                                 the whole int32 range
    F                            32-bit float gray: [0, 1], or [-1, 1] when a value is negative, as
                                 float arrays are read (archsearch.data.convert); other values make
                                 the file unreadable (skipped, with the range found), not clipped

Gray becomes RGB by repeating the plane, color becomes gray by ITU-R 601 luminance (Pillow's
"L"). The image is center-cropped to a square, then resized with a bicubic filter; modes of more
than 8 bits are cropped and resized as floats, so no precision is lost before the final rounding.
What a file needed is returned as a (mode name, what was done) pair, so that a folder can say
once how many images of each kind it converted.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "Conversion", "decode_file", "convert_image", "conversion_notes"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

Conversion = tuple[str, str]  # (the source mode's name, what was done to it)

_NAMES = {"1": "1-bit", "L": "grayscale", "LA": "grayscale+alpha", "La": "grayscale+alpha", "P": "palette",
          "PA": "palette+alpha", "RGBA": "RGBA", "RGBa": "RGBA", "RGBX": "RGBX", "CMYK": "CMYK", "YCbCr": "YCbCr",
          "LAB": "Lab", "HSV": "HSV", "I": "32-bit integer grayscale", "F": "32-bit float grayscale"}
_GRAY = ("1", "L", "LA", "La")
_VIA = {"La": "LA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}  # what Pillow converts them through
_SIXTEEN = ("I;16", "I;16L", "I;16B", "I;16N")


def decode_file(file: Path, size: int, channels: int) -> tuple[np.ndarray, Conversion | None] | str:
    """(the image as uint8 (size, size) or (size, size, 3), how it was converted or None), or
    why it could not be read."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            return convert_image(img, size, channels)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"


def convert_image(img, size: int, channels: int) -> tuple[np.ndarray, Conversion | None]:
    """A PIL image of any mode as uint8 pixels (see the module docstring); ValueError for a float
    image whose values lie outside [0, 1] and [-1, 1]."""
    from PIL import Image

    target = "L" if channels == 1 else "RGB"
    mode = img.mode
    if mode in _SIXTEEN or mode in ("I", "F"):
        values = np.asarray(img).astype(np.float32)
        name, lo, hi, how = _float_range(values) if mode == "F" else _integer_range(img)
        scaled = Image.fromarray((values - np.float32(lo)) * np.float32(255.0 / (hi - lo)), mode="F")
        out = np.clip(np.rint(np.asarray(_square(scaled, size))), 0, 255).astype(np.uint8)
        if target == "RGB":
            out, how = np.repeat(out[..., None], 3, axis=2), f"{how} and expanded to RGB"
        return out, (name, how)
    img.draft(target, (size, size))  # JPEG: decode at the smallest scale still >= size
    with warnings.catch_warnings():  # "palette images with transparency ... should be converted to RGBA"
        warnings.simplefilter("ignore")
        via = _VIA.get(mode)
        converted = (img.convert(via) if via else img).convert(target)
    out = np.asarray(_square(converted, size), dtype=np.uint8)
    return out, None if mode == target else (_NAMES.get(mode, mode), _verb(mode, target))


def _integer_range(img) -> tuple[str, float, float, str]:
    """(name, lo, hi, what was done) of a gray integer mode of more than 8 bits, by the bits its
    file stores."""
    bits = 16 if img.mode in _SIXTEEN else _stored_bits(img)
    if bits <= 16:
        top = 2**bits - 1
        return f"{bits}-bit grayscale", 0.0, float(top), f"scaled from 0..{top} to 8 bits"
    return _NAMES["I"], -2.0**31, 2.0**31 - 1, f"scaled from the whole 32-bit range ({-2**31}..{2**31 - 1}) to 8 bits"


def _stored_bits(img) -> int:
    """Bits per pixel an "I" image's file stores: its raw mode (a 16-bit PNG read as "I" by an older
    Pillow is 'I;16B'), or its TIFF BitsPerSample tag; 32 when neither says less."""
    for tile in getattr(img, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        found = re.match(r"I;(\d+)", rawmode) if isinstance(rawmode, str) else None
        if found:
            return int(found[1])
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    if isinstance(bits, tuple) and bits:
        bits = bits[0]
    return int(bits) if isinstance(bits, int) and 0 < bits <= 32 else 32


def _float_range(values: np.ndarray) -> tuple[str, float, float, str]:
    """(name, lo, hi, what was done) of a float image: [0, 1], or [-1, 1] with a negative value."""
    lo, hi = float(values.min()), float(values.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("float image with NaN or infinite values")
    tol = 1e-3
    if lo < 0:
        if lo < -1 - tol or hi > 1 + tol:
            raise ValueError(f"float image values lie in [{lo:g}, {hi:g}], outside [-1, 1] (and [0, 1])")
        return _NAMES["F"], -1.0, 1.0, "scaled from [-1, 1] to 8 bits"
    if hi > 1 + tol:
        raise ValueError(f"float image values lie in [{lo:g}, {hi:g}], outside [0, 1]; store them in [0, 1] "
                         "or as 8- or 16-bit integers")
    return _NAMES["F"], 0.0, 1.0, "scaled from [0, 1] to 8 bits"


def _square(img, size: int):
    """Center-crop to a square, then resize to size x size. Crop first: resizing a box of the full
    image would let the filter reach past the crop into pixels that are not part of the square."""
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return img


def _verb(mode: str, target: str) -> str:
    alpha = " (alpha dropped)" if mode[-1] in "Aa" else ""
    if target == "RGB" and mode in _GRAY:
        return f"expanded to RGB{alpha}"
    return f"converted to {'grayscale' if target == 'L' else 'RGB'}{alpha}"


def conversion_notes(counts: dict[Conversion, int]) -> list[str]:
    """`12 RGBA images converted to RGB (alpha dropped)`, `3 16-bit grayscale images scaled from
    0..65535 to 8 bits`: one line per kind of conversion, the commonest first."""
    return [f"{n} {name} image{'s' * (n != 1)} {how}"
            for (name, how), n in sorted(counts.items(), key=lambda item: -item[1])]
