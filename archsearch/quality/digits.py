"""The built-in `digits` feature network: a small classifier of the bundled handwritten digits.

    features = DigitsFeatures.load()        # the shipped weights (package data, ~0.3 MB)
    features(images)                        # (N, C, H, W) in [-1, 1] -> (N, 64)

"MNIST FID" practice: a LeNet-like classifier trained on the data's own training images, its
penultimate layer (64 ReLU units, scaled to a mean square of 1 on the training images) as the feature space in which sample sets are compared. It
needs no download, so the digits studies measure quality offline.

The weights are trained by `python -m archsearch.quality.train_digits` (committed with this
file) on the training split of the default digits data (`data: {source: digits}`: 16x16, gray,
val_fraction 0.1, split_seed 0; 1,617 images) and never see its 180 validation images, on which
the shipped weights classify 98.9% correctly (`TRAINED` below records what the script printed).
Images of another size are resized to 16x16 (bilinear, antialiased) and RGB ones averaged to
gray first, so the network scores the digits at any `image_size` and `channels`. A study that
changes `split_seed` or `val_fraction` may validate on images the classifier was trained on; the
distances stay comparable between its trials.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DigitsNet", "DigitsFeatures", "WEIGHTS", "FEATURE_DIM", "TRAINED"]

WEIGHTS = Path(__file__).with_name("digits_features.pt")
FEATURE_DIM = 64
SIZE = 16

# What `python -m archsearch.quality.train_digits` printed for the shipped weights.
TRAINED = {"train_images": 1617, "val_images": 180, "val_accuracy": 0.989, "epochs": 40, "seed": 0}


class DigitsNet(nn.Module):
    """A LeNet-like classifier of 16x16 gray digits; `embed` gives its penultimate features."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),       # 32 x 16 x 16
            nn.MaxPool2d(2),                                 # 32 x 8 x 8
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),      # 64 x 8 x 8
            nn.MaxPool2d(2),                                 # 64 x 4 x 4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU(),   # the features
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        # Set after training so that the training images' features have a mean square of 1, the
        # scale KID's cubic kernel (x·y/d + 1)³ is meant for; the classifier itself ignores it.
        self.register_buffer("scale", torch.ones(()))

    def embed(self, x: Tensor) -> Tensor:
        """(N, C, H, W) in [-1, 1], any size and 1 or 3 channels -> (N, 64) features."""
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.body(x) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x) / self.scale)


class DigitsFeatures(nn.Module):
    """The feature module of `features: digits`: images in [-1, 1] to DigitsNet's 64 features."""

    def __init__(self, net: DigitsNet):
        super().__init__()
        self.net = net.eval()

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> DigitsFeatures:
        net = DigitsNet()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net.embed(x)
