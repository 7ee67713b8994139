"""Endless random minibatches on a device, without a DataLoader.

    batches = data.loader(device, batch_size=64, seed=0)
    images, labels = next(batches)   # (B, C, H, W) float32 in [-1, 1] on device; (B,) int64 or None

Images are kept as uint8 (4x less memory and transfer than float32) and turned into [-1, 1] on
the device, one batch at a time. Two paths, chosen by size:

    resident   the training set fits under `max_resident_bytes` (1 GiB by default; CIFAR-10 at
               32x32 takes 150 MB): it is copied to the device once, and a batch is an index
               selection there. No worker processes, no per-step host work or synchronisation.
    streamed   larger sets stay on the host; each batch is gathered there into a pinned buffer
               (on CUDA) and copied with non_blocking=True, overlapping the running step.

Sampling is by epochs without replacement: each epoch is a fresh permutation, and a batch that
straddles two epochs takes the end of one and the start of the next, so every batch is full
(static shapes for torch.compile and CUDA graphs). The permutations come from a CPU generator
seeded with `seed` (one per epoch, copied asynchronously), so the batch sequence is the same on
every device and on both paths: a trial's data order does not depend on where it runs.

`state_dict()` is the position in that sequence (the generator's state, the current epochs'
order and the index into it; plain tensors and ints), and `load_state_dict` goes back to it:
a resumed training run (archsearch.train_state) draws exactly the batches it would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .convert import to_signed

__all__ = ["DEFAULT_MAX_RESIDENT_BYTES", "DeviceBatches"]

DEFAULT_MAX_RESIDENT_BYTES = 1 << 30


class DeviceBatches(Iterator[tuple[torch.Tensor, torch.Tensor | None]]):
    """Infinite iterator of `(images, labels_or_None)` minibatches on `device`."""

    def __init__(
        self,
        images: torch.Tensor,                   # (N, C, H, W) uint8 on the CPU
        labels: torch.Tensor | None,            # (N,) int64 on the CPU, or None
        device: torch.device | str,
        batch_size: int,
        seed: int = 0,
        max_resident_bytes: int = DEFAULT_MAX_RESIDENT_BYTES,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) == 0:
            raise ValueError("no training images to sample from")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_images = len(images)
        self.epoch = 0                          # permutations drawn so far
        nbytes = images.numel() + (labels.numel() * 8 if labels is not None else 0)
        self.resident = nbytes <= max_resident_bytes
        self._cuda = self.device.type == "cuda"
        self._generator = torch.Generator().manual_seed(seed)
        if self.resident:
            self._images = images.to(self.device)
            self._labels = labels.to(self.device) if labels is not None else None
        else:
            # The set itself stays in pageable memory (pinning gigabytes starves the host); each
            # batch is gathered into a small pinned buffer, which is what makes its copy async.
            self._images, self._labels = images, labels
        index_device = self.device if self.resident else torch.device("cpu")
        self._order = torch.empty(0, dtype=torch.int64, device=index_device)
        self._pos = 0

    @property
    def steps_per_epoch(self) -> int:
        """Batches per pass over the training set (the last one rounded up)."""
        return -(-self.num_images // self.batch_size)

    def __iter__(self) -> DeviceBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._pos + self.batch_size > len(self._order):
            self._refill()
        index = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        if self.resident:
            images = self._images.index_select(0, index)
            labels = self._labels.index_select(0, index) if self._labels is not None else None
        else:
            images, labels = self._gather_on_host(index)
        return to_signed(images), labels

    def state_dict(self) -> dict:
        """Where the sequence is: what `load_state_dict` needs to continue it batch for batch."""
        return {"generator": self._generator.get_state(), "order": self._order.cpu(), "pos": self._pos,
                "epoch": self.epoch, "num_images": self.num_images, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()` of batches over the same images and batch size."""
        for key in ("num_images", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"the saved position is for {key}={state[key]}, these batches have {getattr(self, key)}")
        self._generator.set_state(state["generator"])
        self._order = state["order"].to(self._order.device)
        self._pos, self.epoch = int(state["pos"]), int(state["epoch"])

    def _refill(self) -> None:
        # Keep the unused tail of the current epoch and append whole new epochs after it.
        parts, have = [self._order[self._pos:]], len(self._order) - self._pos
        while have < self.batch_size:
            perm = torch.randperm(self.num_images, generator=self._generator)
            self.epoch += 1
            if self.resident and self._cuda:
                perm = perm.pin_memory().to(self.device, non_blocking=True)  # no host sync
            elif self.resident:
                perm = perm.to(self.device)
            parts.append(perm)
            have += self.num_images
        self._order = torch.cat(parts)
        self._pos = 0

    def _gather_on_host(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        shape = (len(index), *self._images.shape[1:])
        # Fresh pinned buffers from torch's caching host allocator: it keeps a buffer out of reuse
        # until its asynchronous copy has finished, so no batch can overwrite one still in flight.
        images = torch.empty(shape, dtype=torch.uint8, pin_memory=self._cuda)
        torch.index_select(self._images, 0, index, out=images)
        labels = None
        if self._labels is not None:
            labels = torch.empty(len(index), dtype=torch.int64, pin_memory=self._cuda)
            torch.index_select(self._labels, 0, index, out=labels)
        if self.device.type != "cpu":
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True) if labels is not None else None
        return images, labels
