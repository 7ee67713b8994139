"""What reading a data set will take, known before reading it.

    estimate = estimate_data(cfg)   # DataEstimate: images, their size, bytes held and at the peak of reading
    estimate.held_bytes             # what the split data set keeps (8-bit pixels)
    estimate.reading_bytes          # the most reading holds at once: the source as read, the images, temporaries

The estimate costs no decoding: image counts come from the source's size (digits, CIFAR-10),
a folder listing, IDX headers (MNIST), or the header of an .npy array (also inside an .npz),
and bytes from those counts times the configured size and channels. Along the way it makes the
checks that reading starts with, with the same `data.*` errors: the folder exists and holds
image files one of which decodes, the labels rule of a folder, the dataset files are there (or
will be downloaded), the arrays have a usable layout and dtype, label arrays fit. What only a
full read can find (an image array's values out of range, undecodable files beyond the first)
is left to `load_data`, which `archsearch run` does before it writes anything.

The bytes follow `load_data` as it is written (archsearch.data.sources, .standard, .convert):
sources read into 8-bit (N, C, S, S) images, conversion in chunks of `CHUNK_PIXELS` floats,
then a split that copies the images once. Keep them in step when reading changes.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archsearch.errors import ConfigError
from archsearch.schema.data import DataConfig

from .convert import as_nchw, chunk_images
from .images import decode_file
from .sources import (
    DIGITS_COUNT,
    SYNTHETIC_BYTES_PER_PIXEL,
    check_labels,
    check_npz_keys,
    existing_file,
    folder_classes,
    image_files,
    load_npy,
    synthetic_chunk,
    unreadable_folder,
)
from .standard import CIFAR10_COUNT, cifar10_count, mnist_count

__all__ = ["DataEstimate", "estimate_data", "split_sizes", "count_field"]

_DECODE_BYTES_PER_PIXEL = 16  # a decoded file at its own size: Pillow's image, its conversion, a float copy


@dataclass(frozen=True)
class DataEstimate:
    """A data set's size before it is read, and the bytes reading it holds at its peak."""

    images: int                 # images kept (at most: a folder's unreadable files are skipped)
    channels: int
    image_size: int
    source: str                 # what was counted, for messages: "1797 digits", "70000 image files under faces"
    fixed_bytes: int = 0        # source bytes whatever is kept (a whole .npz array, files being decoded)
    per_image_bytes: int = 0    # source bytes per image kept (an array's copy, unpickled batches)
    pixels_in: int = 0          # values of one source image converted as floats (0: no conversion)
    stacked: bool = False       # decoded one by one into a list, then stacked: the images twice
    chunk_bytes_per_pixel: int = 0  # drawn in chunks of synthetic_chunk(image_size) images, these bytes a pixel

    @property
    def image_bytes(self) -> int:
        """Bytes of one image as kept: 8-bit pixels."""
        return self.channels * self.image_size * self.image_size

    @property
    def held_bytes(self) -> int:
        """What the loaded data set keeps (training and validation images, 8 bits each)."""
        return self.images * self.image_bytes

    @property
    def reading_bytes(self) -> int:
        """The most reading and splitting hold at once."""
        return self.reading_at(self.images, self.image_size)

    def reading_at(self, images: int, image_size: int) -> int:
        """`reading_bytes` had `images` images been kept at `image_size` (the same source)."""
        out = images * self.channels * image_size**2
        source = self.fixed_bytes + images * self.per_image_bytes + (out if self.stacked else 0)
        temporaries = 0
        if self.pixels_in and images:
            pixels_out = self.channels * image_size**2
            temporaries = chunk_images(self.pixels_in, pixels_out) * (self.pixels_in + pixels_out) * 4 * 2
        if self.chunk_bytes_per_pixel and images:
            temporaries += min(images, synthetic_chunk(image_size)) * image_size**2 * self.chunk_bytes_per_pixel
        # Reading holds the source, the images it makes and temporaries; the split then copies the
        # images into training and validation before the read ones go.
        return max(source + out + temporaries, 2 * out)


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(training, validation) image counts of n images: validation gets ceil(val_fraction * n),
    at least 1 and at most n - 1 (archsearch.data.split_indices draws them)."""
    num_val = min(max(math.ceil(val_fraction * n - 1e-9), 1), n - 1)  # 1e-9: 0.07 * 100 is 7.000000000000001
    return n - num_val, num_val


def count_field(cfg: DataConfig) -> str:
    """The field that sets how many images are read."""
    return "data.num_images" if cfg.source == "synthetic" and cfg.max_images is None else "data.max_images"


def estimate_data(cfg: DataConfig) -> DataEstimate:
    """The images `load_data(cfg)` would read and what reading them takes; see the module
    docstring. Raises ConfigError(data.*) for what reading would refuse first."""
    return _ESTIMATORS[cfg.source](cfg)


def _cap(n: int, max_images: int | None) -> int:
    return n if max_images is None else min(n, max_images)


def _digits(cfg) -> DataEstimate:
    n = _cap(DIGITS_COUNT, cfg.max_images)
    return DataEstimate(n, cfg.channels, cfg.image_size, f"{n} digits", fixed_bytes=DIGITS_COUNT * 65 * 4 * 2,
                        pixels_in=64)


def _synthetic(cfg) -> DataEstimate:
    n = _cap(cfg.num_images, cfg.max_images)
    return DataEstimate(n, cfg.channels, cfg.image_size, f"{n} synthetic images", fixed_bytes=cfg.num_images * 64,
                        chunk_bytes_per_pixel=SYNTHETIC_BYTES_PER_PIXEL)


def _folder(cfg) -> DataEstimate:
    root = Path(cfg.path)
    files = image_files(root)
    if cfg.labels:
        folder_classes(root, files)
    skipped: list[tuple[str, str]] = []
    first = None
    for file in files:  # one image that decodes: the folder can be read (the rest is load_data's)
        result = decode_file(file, cfg.image_size, cfg.channels)
        if not isinstance(result, str):
            first = file
            break
        skipped.append((file.relative_to(root).as_posix(), result))
    if first is None:
        raise unreadable_folder(root, files, skipped)
    n = _cap(len(files), cfg.max_images)
    workers = min(8, os.cpu_count() or 1) if len(files) > 64 else 1
    decoding = workers * _file_pixels(first) * _DECODE_BYTES_PER_PIXEL  # files are decoded whole, several at once
    return DataEstimate(n, cfg.channels, cfg.image_size, f"{n} image files under {root}", fixed_bytes=decoding,
                        stacked=True)


def _file_pixels(file: Path) -> int:
    from PIL import Image

    with Image.open(file) as img:  # the header only
        return img.size[0] * img.size[1] * len(img.getbands())


def _cifar10(cfg) -> DataEstimate:
    n = _cap(cifar10_count(cfg), cfg.max_images)
    # The batches are unpickled whole (10,000 images each) and concatenated: the source twice.
    batches = min(CIFAR10_COUNT, -(-n // 10_000) * 10_000)
    return DataEstimate(n, cfg.channels, cfg.image_size, f"{n} CIFAR-10 images", fixed_bytes=2 * batches * 3072,
                        pixels_in=3072)


def _mnist(cfg) -> DataEstimate:
    total = mnist_count(cfg)
    n = _cap(total, cfg.max_images)
    return DataEstimate(n, cfg.channels, cfg.image_size, f"{n} {cfg.source} images", fixed_bytes=2 * total * 784,
                        pixels_in=784)  # the file's bytes, and decompressed


def _arrays(cfg, shape: tuple[int, ...], dtype: np.dtype, where: str, whole_file: bool) -> DataEstimate:
    """An image array of `shape` and `dtype` (only its header read): its layout is checked as
    reading checks it, on an array of that shape that holds no memory."""
    if len(shape) not in (3, 4):
        raise ConfigError(where, f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {shape}")
    empty = np.lib.stride_tricks.as_strided(np.zeros((), dtype=dtype), shape=shape, strides=(0,) * len(shape))
    _, c, h, w = as_nchw(empty, where).shape
    total, per_image = shape[0], int(np.prod(shape[1:])) * dtype.itemsize
    n = _cap(total, cfg.max_images)
    already = dtype == np.uint8 and c == cfg.channels and h == w == cfg.image_size
    # np.array copies the kept images out of the file; an .npz is decompressed whole first.
    return DataEstimate(n, cfg.channels, cfg.image_size, f"{n} images of {Path(cfg.path).name}",
                        fixed_bytes=total * per_image if whole_file else 0, per_image_bytes=per_image,
                        pixels_in=0 if already else c * h * w)


def _npy(cfg) -> DataEstimate:
    images = load_npy(existing_file(cfg.path, "data.path"), "data.path")  # memory-mapped: the header only
    if cfg.labels_path is not None:
        labels = load_npy(existing_file(cfg.labels_path, "data.labels_path"), "data.labels_path")
        check_labels(labels, len(images), "data.labels_path")
    return _arrays(cfg, tuple(images.shape), images.dtype, "data.path", whole_file=False)


def _npz(cfg) -> DataEstimate:
    path = existing_file(cfg.path, "data.path")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            check_npz_keys(cfg, path, arrays)
            with arrays.zip.open(f"{cfg.key}.npy") as member:
                shape, dtype = _npy_header(member)
            labels = arrays[cfg.labels_key] if cfg.labels_key is not None else None  # small: read whole
    except ConfigError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ConfigError("data.path", f"cannot read {path} as an .npz file: {exc}") from None
    if labels is not None:
        check_labels(labels, shape[0] if shape else 0, "data.labels_key")
    return _arrays(cfg, shape, dtype, "data.key", whole_file=True)


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of an .npy stream, reading nothing after it."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    shape, _, dtype = read(f) if read is not None else fmt._read_array_header(f, version)
    return tuple(shape), np.dtype(dtype)


_ESTIMATORS = {
    "digits": _digits,
    "folder": _folder,
    "cifar10": _cifar10,
    "mnist": _mnist,
    "fashion-mnist": _mnist,
    "npz": _npz,
    "npy": _npy,
    "synthetic": _synthetic,
}
