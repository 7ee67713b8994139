"""The real images' feature statistics, computed once and cached on disk for every trial, worker and study.

    stats = reference_stats(data.train_uint8, "digits", "train", net, cache_dir)   # a FeatureStats

The cache file's name says what it holds: the data set, the split, the feature network (its
name and a hash of its weights) and the image count, then a hash of the images' 8-bit pixels,
so that another image size, channel count, split seed or `max_images` is another file:

    ~/.cache/archsearch/quality/digits-train-digits-1a2b3c4d5e6f-1617-0f9e8d7c6b5a.npz

A file is written atomically (a killed worker leaves none or a whole one) and two workers that
compute the same statistics at once both write the same content. A file that cannot be read is
computed again; one that cannot be written (a read-only or full disk) is a warning, and the
statistics are used from memory.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np

from archsearch.io import WriteWarning, atomic_write

from .features import FeatureNetwork
from .stats import FeatureStats

__all__ = ["reference_stats", "reference_file"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", text).strip("_")[:80] or "data"


def reference_file(images, dataset: str, split: str, net: FeatureNetwork, cache_dir: str | Path) -> Path:
    """The cache file of these images' statistics under `net` (see the module docstring)."""
    pixels = hashlib.sha256(np.ascontiguousarray(images.numpy()).tobytes()).hexdigest()[:12]
    return Path(cache_dir) / f"{_slug(dataset)}-{split}-{_slug(net.key)}-{images.shape[0]}-{pixels}.npz"


def reference_stats(images, dataset: str, split: str, net: FeatureNetwork, cache_dir: str | Path, device=None,
                    batch_size: int = 500) -> FeatureStats:
    """The statistics of `images` ((N, C, H, W) uint8) under `net`: read from the cache, or computed and cached."""
    path = reference_file(images, dataset, split, net, cache_dir)
    try:
        with np.load(path) as saved:
            return FeatureStats(saved["mu"], saved["sigma"], saved["features"])
    except (OSError, KeyError, ValueError):
        pass  # absent or unreadable: compute it
    from archsearch.data.convert import to_signed

    stats = FeatureStats.of(net.embed(to_signed(images), device, batch_size))
    try:
        atomic_write(path, lambda tmp: _save(tmp, stats))
    except OSError as exc:
        warnings.warn(f"reference statistics not cached: {exc}", WriteWarning, stacklevel=2)
    return stats


def _save(tmp: str, stats: FeatureStats) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to the temporary name
        np.savez(f, mu=stats.mu, sigma=stats.sigma, features=stats.features)
