"""Train the built-in `digits` feature network and write its weights (package data).

    python -m archsearch.quality.train_digits                 # writes archsearch/quality/digits_features.pt
    python -m archsearch.quality.train_digits --out /tmp/w.pt --epochs 5

Trains archsearch.quality.digits.DigitsNet on the training split of the default digits data
(16x16 gray, val_fraction 0.1, split_seed 0) only, with random shifts of up to 2 pixels, AdamW
and a cosine learning rate, on the CPU from a fixed seed; scales the features to a mean square of 1
on the training images; prints the accuracy on the held-out
validation split, which the network never trains on. Takes about half a minute on two cores.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from archsearch.data import load_data
from archsearch.quality.digits import WEIGHTS, DigitsNet
from archsearch.schema.data import DEFAULT_DATA

__all__ = ["train_digits_net", "accuracy"]


def _shift(x: torch.Tensor, generator: torch.Generator, most: int = 2) -> torch.Tensor:
    """Each image moved by up to `most` pixels each way (the background, -1, fills in)."""
    padded = F.pad(x, (most,) * 4, value=-1.0)
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * most + 1, (x.shape[0], 2), generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return out


@torch.no_grad()
def accuracy(net: DigitsNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    return float((net(images).argmax(1) == labels).float().mean())


def train_digits_net(epochs: int = 40, seed: int = 0, batch_size: int = 64, lr: float = 3e-3) -> tuple[DigitsNet, float]:
    """The trained network and its validation accuracy."""
    data = load_data(DEFAULT_DATA)
    x, y = data.train, data.train_labels
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = DigitsNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(net(_shift(x[batch], generator)), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        net.scale.fill_(net.embed(x).square().mean().rsqrt())
    return net, accuracy(net, data.val, data.val_labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    net, val_accuracy = train_digits_net(args.epochs, args.seed)
    torch.save(net.state_dict(), args.out)
    print(f"validation accuracy {val_accuracy:.3f} on the 180 held-out digits; weights in {args.out}")


if __name__ == "__main__":
    main()
