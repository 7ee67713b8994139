"""Images for training and validation: a `DataConfig` in, tensors in [-1, 1] out.

    data = load_data(DataConfig)                 # default: scikit-learn's digits at 16x16x1
    data.train, data.val                         # (N, C, H, W) float32 in [-1, 1], on the CPU
    data.train_labels, data.num_classes          # (N,) int64 and 10, or None when unlabelled
    for step, (x, y) in zip(range(steps), data.loader(device, batch_size=64, seed=0)): ...

Every source is decoded once into memory as 8-bit pixels at the configured size and channels
(see `convert` for the layout, range and resizing rules, `images` for image files of any mode),
capped at `max_images`, split, and kept as those 8-bit pixels: `train` and `val` make the float32
images when asked for (four times the memory, so nothing holds on to them). The split: a
permutation drawn from `split_seed` alone sends its last ceil(val_fraction * N) images (at least
one) to validation. The same `split_seed` gives the same split every time, whatever the training
seed, so every trial of a study is validated on the same images. Files that could not be decoded
are listed in `data.skipped`, not fatal; `data.describe()` is what to tell the user once it is
read (sizes and split, how a folder's images were converted, what was skipped).

`estimate_data(cfg)` (archsearch.data.memory) says what reading a source will hold, from image
counts and file headers alone, without decoding; `archsearch validate` and `run` check it against
the machine's memory before reading anything.

Knows no model and no study: may import `schema` and `errors` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from archsearch.errors import ConfigError
from archsearch.schema.data import DEFAULT_DATA, DataConfig

from .batches import DEFAULT_MAX_RESIDENT_BYTES, DeviceBatches
from .convert import to_signed
from .memory import DataEstimate, count_field, estimate_data, split_sizes
from .sources import Raw, read_digits, read_folder, read_npy, read_npz, read_synthetic
from .standard import DownloadError, read_cifar10, read_mnist

__all__ = [
    "DEFAULT_MAX_RESIDENT_BYTES",
    "DataEstimate",
    "DeviceBatches",
    "DownloadError",
    "ImageData",
    "count_field",
    "estimate_data",
    "split_sizes",
    "load_data",
    "split_indices",
]

_READERS: dict[str, Callable[..., Raw]] = {
    "digits": read_digits,
    "folder": read_folder,
    "cifar10": read_cifar10,
    "mnist": read_mnist,
    "fashion-mnist": read_mnist,
    "npz": read_npz,
    "npy": read_npy,
    "synthetic": read_synthetic,
}


@dataclass(frozen=True)
class ImageData:
    """A training set and its held-out validation set, ready for a diffusion model."""

    train_uint8: torch.Tensor               # (N_train, C, H, W) uint8, the 8-bit pixels, CPU
    val_uint8: torch.Tensor                 # (N_val, C, H, W) uint8, CPU
    train_labels: torch.Tensor | None       # (N_train,) int64, or None without labels
    val_labels: torch.Tensor | None         # (N_val,) int64, or None
    num_classes: int | None                 # size of the label vocabulary, or None
    name: str                               # the source, e.g. "digits" or "folder:/data/faces"
    class_names: tuple[str, ...] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) not decoded
    notes: list[str] = field(default_factory=list)  # how the source was read (files found, modes converted)

    @property
    def train(self) -> torch.Tensor:
        """(N_train, C, H, W) float32 in [-1, 1]: made anew at each call (4x the 8-bit pixels)."""
        return to_signed(self.train_uint8)

    @property
    def val(self) -> torch.Tensor:
        """(N_val, C, H, W) float32 in [-1, 1]: made anew at each call."""
        return to_signed(self.val_uint8)

    @property
    def channels(self) -> int:
        return self.train_uint8.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_uint8.shape[-1]

    def loader(
        self,
        device: torch.device | str,
        batch_size: int,
        seed: int = 0,
        max_resident_bytes: int = DEFAULT_MAX_RESIDENT_BYTES,
    ) -> DeviceBatches:
        """Endless random training batches on `device`; same seed, same sequence on any device.

        The set lives on the device when it fits in `max_resident_bytes`, else it is streamed.
        """
        return DeviceBatches(self.train_uint8, self.train_labels, device, batch_size, seed, max_resident_bytes)

    def summary(self) -> str:
        """One line for logs: `digits: 1617 train + 180 val images, 1x16x16, 10 classes`."""
        c, h, w = self.train_uint8.shape[1:]
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        n = len(self.skipped)
        skipped = f", {n} unreadable file{'s' * (n > 1)} skipped" if n else ""
        return (f"{self.name}: {len(self.train_uint8)} train + {len(self.val_uint8)} val images, "
                f"{c}x{h}x{w}{classes}{skipped}")

    def describe(self) -> list[str]:
        """Informational lines for the user: the summary, how the images were read, each skipped file."""
        return [self.summary(), *self.notes, *(f"skipped {name}: {reason}" for name, reason in self.skipped)]


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) indices of n images; depends on the arguments only, never on torch's
    global RNG. Validation gets ceil(val_fraction * n) images, at least 1 and at most n - 1."""
    if n < 2:
        raise ConfigError("data", f"{n} image(s) cannot be split into training and validation; need at least 2")
    num_val = split_sizes(n, val_fraction)[1]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return perm[: n - num_val].sort().values, perm[n - num_val:].sort().values


def load_data(cfg: DataConfig = DEFAULT_DATA) -> ImageData:
    """Read, convert and split the images `cfg` describes. Bad input raises ConfigError(data.*)."""
    raw = _READERS[cfg.source](cfg)
    train_idx, val_idx = split_indices(len(raw.images), cfg.val_fraction, cfg.split_seed)
    labels = torch.from_numpy(raw.labels) if raw.labels is not None else None
    name = f"{cfg.source}:{cfg.path}" if cfg.source in ("folder", "npz", "npy") else cfg.source
    return ImageData(
        train_uint8=raw.images[train_idx],
        val_uint8=raw.images[val_idx],
        train_labels=labels[train_idx] if labels is not None else None,
        val_labels=labels[val_idx] if labels is not None else None,
        num_classes=len(raw.class_names) if labels is not None and raw.class_names else None,
        name=name,
        class_names=raw.class_names if labels is not None else None,
        skipped=raw.skipped,
        notes=raw.notes,
    )
