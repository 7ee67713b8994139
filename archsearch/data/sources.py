"""Readers of the sources that need no download: digits, image folders, npz/npy arrays, synthetic.

Each reader takes its config and returns a `Raw`: the first `max_images` images of the source as
uint8 (N, C, S, S) at the configured size and channels, their labels (when kept) and the files it
had to skip. `archsearch.data.load_data` then splits them; the standard datasets that may be
downloaded (CIFAR-10, MNIST, Fashion-MNIST) live in `archsearch.data.standard`.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from archsearch.errors import ConfigError, excerpt
from archsearch.schema.data import Digits, Folder, Npy, Npz, Synthetic

from .convert import to_uint8_images
from .images import IMAGE_SUFFIXES, Conversion, conversion_notes, decode_file

__all__ = ["IMAGE_SUFFIXES", "Raw", "read_digits", "read_folder", "read_npy", "read_npz", "read_synthetic",
           "image_files", "folder_classes", "unreadable_folder", "existing_file", "load_npy", "check_labels",
           "synthetic_chunk", "check_npz_keys", "DIGITS_COUNT"]


@dataclass
class Raw:
    """What a reader hands to the splitter."""

    images: torch.Tensor                      # (N, C, S, S) uint8
    labels: np.ndarray | None = None          # (N,) int64 class indices
    class_names: tuple[str, ...] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)  # how the images were read, for the user


DIGITS_COUNT = 1797  # images in scikit-learn's digits


def _cap(n: int, max_images: int | None) -> int:
    return n if max_images is None else min(n, max_images)


# --------------------------------------------------------------------------- digits


def read_digits(cfg: Digits) -> Raw:
    """scikit-learn's bundled digits, read straight from its CSV (importing sklearn.datasets
    alone takes seconds; the file takes milliseconds)."""
    table = _digits_table()
    n = _cap(len(table), cfg.max_images)
    pixels = table[:n, :64].reshape(n, 8, 8) / np.float32(16.0)  # 17 gray levels, 0..16 -> [0, 1]
    images = to_uint8_images(pixels, channels=cfg.channels, size=cfg.image_size, path="data")
    labels = table[:n, 64].astype(np.int64) if cfg.labels else None
    return Raw(images, labels, tuple(str(d) for d in range(10)) if cfg.labels else None)


def _digits_table() -> np.ndarray:
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if csv is not None and csv.is_file():
        text = gzip.decompress(csv.read_bytes()).decode("ascii")
        values = np.array(text.replace("\n", ",").strip(",").split(","), dtype=np.float32)
        return values.reshape(-1, 65)  # 64 pixels + the label
    from sklearn.datasets import load_digits  # layout of the package changed: take the slow road

    bunch = load_digits()
    return np.concatenate([bunch.data, bunch.target[:, None]], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- folder


def image_files(root: Path) -> list[Path]:
    """The image files under the folder `root` (recursively), in sorted order; ConfigError(data.path)
    when `root` is not a folder or holds none."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise ConfigError("data.path", f"{root} {what}; point data.path at a folder of PNG/JPEG images")
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        others = "/".join(IMAGE_SUFFIXES[3:])
        raise ConfigError("data.path", f"no .png/.jpg/.jpeg files (nor {others}) under {root} (searched recursively)")
    return files


def read_folder(cfg: Folder) -> Raw:
    """Decode the image files under `cfg.path` in sorted order, skipping unreadable ones; any
    mode Pillow reads, each scaled by its own range (archsearch.data.images)."""
    root = Path(cfg.path)
    files = image_files(root)
    class_of = folder_classes(root, files) if cfg.labels else None

    want = _cap(len(files), cfg.max_images)
    kept: list[tuple[Path, np.ndarray]] = []
    conversions: dict[Conversion, int] = {}  # how the images kept were converted, by kind
    skipped: list[tuple[str, str]] = []
    workers = min(8, os.cpu_count() or 1) if len(files) > 64 else 1
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding/resizing
        for start in range(0, len(files), 256):
            chunk = files[start:start + 256]
            results = pool.map(lambda file: decode_file(file, cfg.image_size, cfg.channels), chunk)
            for file, result in zip(chunk, results):
                if isinstance(result, str):
                    skipped.append((file.relative_to(root).as_posix(), result))
                elif len(kept) < want:
                    array, how = result
                    kept.append((file, array))
                    if how is not None:
                        conversions[how] = conversions.get(how, 0) + 1
            if len(kept) >= want:
                break
    if not kept:
        raise unreadable_folder(root, files, skipped)
    pixels = np.stack([array for _, array in kept])  # (N, S, S) or (N, S, S, 3) uint8
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)  # (N, C, S, S)
    images = to_uint8_images(pixels, channels=cfg.channels, size=cfg.image_size, path="data.path")
    notes = [_found_note(root, len(files), len(kept), cfg.max_images), *conversion_notes(conversions)]
    if class_of is None:
        return Raw(images, skipped=skipped, notes=notes)
    names = tuple(sorted(set(class_of.values())))
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[class_of[file]] for file, _ in kept], dtype=np.int64)
    return Raw(images, labels, names, skipped, notes)


def _found_note(root: Path, found: int, read: int, max_images: int | None) -> str:
    cap = f" (max_images: {max_images})" if max_images is not None and read == max_images < found else ""
    return f"{found} image files under {root}, {read} read{cap}"


def unreadable_folder(root: Path, files: list[Path], skipped: list[tuple[str, str]]) -> ConfigError:
    """The error of a folder none of whose image files could be decoded."""
    name, reason = skipped[0]
    return ConfigError("data.path", f"none of the {len(files)} image files under {root} could be read "
                                    f"(e.g. {name}: {reason})")


def folder_classes(root: Path, files: list[Path]) -> dict[Path, str]:
    loose = [f for f in files if len(f.relative_to(root).parts) == 1]
    if loose:
        raise ConfigError(
            "data.labels",
            f"{len(loose)} images (e.g. {loose[0].name}) sit directly in {root} and so have no class; "
            "move them into class sub-folders or set labels: false",
        )
    return {f: f.relative_to(root).parts[0] for f in files}


# --------------------------------------------------------------------------- arrays


def check_npz_keys(cfg: Npz, path: Path, arrays) -> None:
    """ConfigError at `data.key` / `data.labels_key` for an array the opened .npz lacks."""
    for key, where in ((cfg.key, "data.key"), (cfg.labels_key, "data.labels_key")):
        if key is not None and key not in arrays.files:
            raise ConfigError(where, f"{path.name} has no array {excerpt(key)}; it holds {sorted(arrays.files)}")


def read_npz(cfg: Npz) -> Raw:
    """The `key` array (and the `labels_key` array) of an .npz file."""
    path = existing_file(cfg.path, "data.path")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            check_npz_keys(cfg, path, arrays)
            images = arrays[cfg.key]
            labels = arrays[cfg.labels_key] if cfg.labels_key is not None else None
    except ConfigError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError("data.path", f"cannot read {path} as an .npz file: {exc}") from None
    return _from_arrays(cfg, images, labels, "data.key", "data.labels_key")


def read_npy(cfg: Npy) -> Raw:
    """The images of an .npy file (memory-mapped, so a cap reads only what it keeps)."""
    images = load_npy(existing_file(cfg.path, "data.path"), "data.path")
    labels = None
    if cfg.labels_path is not None:
        labels = load_npy(existing_file(cfg.labels_path, "data.labels_path"), "data.labels_path")
    return _from_arrays(cfg, images, labels, "data.path", "data.labels_path")


def existing_file(path: str, where: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(where, f"{file} {'is not a file' if file.exists() else 'does not exist'}")
    return file


def load_npy(path: Path, where: str) -> np.ndarray:
    """The array of an .npy file, memory-mapped (only its header is read until it is indexed)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(where, f"cannot read {path} as an .npy file: {exc}") from None


def check_labels(labels: np.ndarray, num_images: int, where: str) -> None:
    """The rules of an array of class labels for `num_images` images; ConfigError at `where`."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(where, f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) != num_images:
        raise ConfigError(where, f"{len(labels)} labels for {num_images} images")
    if len(labels) and labels.min() < 0:
        raise ConfigError(where, "labels must be class indices >= 0")


def _from_arrays(cfg: Npz | Npy, images: np.ndarray, labels: np.ndarray | None, where: str, labels_where: str) -> Raw:
    if images.ndim not in (3, 4):
        raise ConfigError(
            where, f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {images.shape}"
        )
    n = _cap(len(images), cfg.max_images)
    if labels is not None:
        check_labels(labels, len(images), labels_where)
        labels = np.array(labels[:n], dtype=np.int64)  # a copy, out of the memory map
    # np.array copies the kept images out of the (read-only) memory map.
    out = to_uint8_images(np.array(images[:n]), channels=cfg.channels, size=cfg.image_size, path=where)
    names = None if labels is None else tuple(str(c) for c in range(int(labels.max()) + 1))
    return Raw(out, labels, names)


# --------------------------------------------------------------------------- synthetic

SHAPES = ("circle", "square", "stripes")
SYNTHETIC_BYTES_PER_PIXEL = 64  # float64 and boolean planes of a chunk being drawn, per pixel of it


def synthetic_chunk(size: int) -> int:
    """Shapes drawn at a time: up to 1024, fewer for large images (temporaries of ~256 MB)."""
    return max(1, min(1024, (256 << 20) // (SYNTHETIC_BYTES_PER_PIXEL * size * size)))


def read_synthetic(cfg: Synthetic) -> Raw:
    """Draw `num_images` shapes from `cfg.seed`: same seed, same pixels, whatever the cap."""
    rng = np.random.default_rng(cfg.seed)
    n, s, c = cfg.num_images, cfg.image_size, cfg.channels
    # Every random number is drawn up front, so an image does not depend on max_images.
    kind = rng.integers(0, len(SHAPES), n)
    center = rng.uniform(0.3, 0.7, (n, 2)) * s
    radius = rng.uniform(0.12, 0.3, n) * s
    angle = rng.uniform(0.0, math.pi, n)
    period = rng.uniform(0.2, 0.45, n) * s
    background = rng.uniform(0.0, 0.35, (n, c))
    foreground = rng.uniform(0.6, 1.0, (n, c))
    n = _cap(n, cfg.max_images)

    grid = np.arange(s, dtype=np.float32) + 0.5
    images = np.empty((n, c, s, s), dtype=np.uint8)
    step = synthetic_chunk(s)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        dy = grid[None, :, None] - center[sl, 0, None, None]        # (B, S, 1)
        dx = grid[None, None, :] - center[sl, 1, None, None]        # (B, 1, S)
        r = radius[sl, None, None]
        circle = dy**2 + dx**2 <= r**2
        square = np.maximum(np.abs(dy), np.abs(dx)) <= r
        along = dx * np.cos(angle[sl, None, None]) + dy * np.sin(angle[sl, None, None])
        stripes = np.cos(2 * math.pi * along / period[sl, None, None]) > 0
        k = kind[sl, None, None]
        mask = np.where(k == 0, circle, np.where(k == 1, square, stripes)).astype(np.float32)  # (B, S, S)
        bg, fg = background[sl, :, None, None], foreground[sl, :, None, None]
        images[sl] = np.rint((bg + (fg - bg) * mask[:, None]) * 255.0).astype(np.uint8)
    labels = kind[:n].astype(np.int64) if cfg.labels else None
    return Raw(torch.from_numpy(images), labels, SHAPES if cfg.labels else None)
