"""The sample-quality phase of a trial: draw samples, embed them, compare them with the real images.

    phase = QualityPhase(cfg, data)                          # once per process: features, reference (lazily)
    result = phase.measure(model, settings, (1, 16, 16))     # a QualityResult
    result.values                                            # {'fd': 3.2, 'kid': 0.011, 'sample_precision': ..., ...}
    result.seconds, result.info                              # quality_seconds, how it was measured

Sample i starts from noise seeded by (cfg.seed, i), and a stochastic sampler's every later draw
for it comes from the same per-sample generator, so sample i is the same noise for every model
and whatever the batch size: two models' distances differ by the model, not by the noise.
A class-conditional model draws class i % num_classes for sample i. The samples are rounded to
8-bit pixels, as the real images are, before the features see them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from archsearch.data.convert import to_signed, to_unsigned
from archsearch.device import autocast_context
from archsearch.diffusion import ddim_sample, ddpm_sample
from archsearch.evaluate import model_num_classes
from archsearch.schema.quality import QualityConfig
from archsearch.settings import RunSettings

from .features import FeatureNetwork, load_features
from .reference import reference_stats
from .stats import FeatureStats, frechet_distance, kernel_distance, precision_recall

__all__ = ["QualityPhase", "QualityResult", "draw_samples", "fd_noise", "sample_seed"]


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample `index`'s noise: independent streams for every (seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


class _IndexedNoise:
    """Gaussian draws of a batch, each sample's row from its own generator (on the CPU, so the
    same on every device)."""

    def __init__(self, seed: int, indices: range, shape: tuple[int, ...], device: torch.device):
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices]
        self.shape, self.device = shape, device

    def __call__(self) -> Tensor:
        rows = [torch.randn(self.shape, generator=g) for g in self.generators]
        return torch.stack(rows).to(self.device)


def draw_samples(model: nn.Module, cfg: QualityConfig, settings: RunSettings, image_shape: tuple[int, int, int],
                 num_classes: int | None = None, count: int | None = None) -> Tensor:
    """`count` (default cfg.num_samples) samples (N, C, H, W) in [-1, 1] on the CPU, 8-bit rounded."""
    device, count = settings.device, count or cfg.num_samples
    num_classes = num_classes if num_classes is not None else model_num_classes(model)
    schedule = settings.schedule.to(device)
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast_context(device, settings.precision):
            for start in range(0, count, cfg.batch_size):
                indices = range(start, min(start + cfg.batch_size, count))
                noise = _IndexedNoise(cfg.seed, indices, image_shape, device)
                labels = (torch.tensor(list(indices), device=device) % num_classes) if num_classes else None
                shape = (len(indices), *image_shape)
                if cfg.sampler.kind == "ddim":
                    x = ddim_sample(model, shape, schedule, cfg.sampler.steps, None, labels, settings.prediction,
                                    eta=cfg.sampler.eta, noise=noise)
                else:
                    x = ddpm_sample(model, shape, schedule, cfg.sampler.steps, None, labels, settings.prediction,
                                    noise=noise)
                out.append(to_signed(to_unsigned(x.float().cpu())))
    finally:
        model.train(was_training)
    return torch.cat(out)


def fd_noise(features: np.ndarray, reference: FeatureStats, rounds: int, seed: int = 0) -> float:
    """The standard deviation of the FD over `rounds` resamplings (with replacement) of the
    generated features: how much the FD would move with other samples of the same model."""
    rng = np.random.default_rng(seed)
    n = features.shape[0]
    draws = [frechet_distance(*FeatureStats.of(features[rng.integers(0, n, n)]).gaussian, *reference.gaussian)
             for _ in range(rounds)]
    return float(np.std(draws, ddof=1))


@dataclass
class QualityResult:
    """One model's sample quality."""

    values: dict[str, float]                       # by metric name, those cfg.metrics asked for
    seconds: float                                 # sampling, features and distances (quality_seconds)
    info: dict[str, Any] = field(default_factory=dict)  # how it was measured (metrics' `quality` record)


class QualityPhase:
    """What every quality measurement of a process shares: the config, the feature network and
    the reference statistics (loaded at first use, from the disk cache when there)."""

    def __init__(self, cfg: QualityConfig, data, path: str = "eval.quality"):
        self.cfg, self.data, self.path = cfg, data, path
        self.source = data.name.split(":", 1)[0]
        self._features: FeatureNetwork | None = None
        self._reference: FeatureStats | None = None

    @property
    def features(self) -> FeatureNetwork:
        if self._features is None:
            self._features = load_features(self.cfg, self.source, self.path)
        return self._features

    def reference(self, device: torch.device | None = None) -> FeatureStats:
        if self._reference is None:
            images = self.data.train_uint8 if self.cfg.reference == "train" else self.data.val_uint8
            if self.cfg.reference_samples is not None:
                images = images[: self.cfg.reference_samples]
            self._reference = reference_stats(images, self.data.name, self.cfg.reference, self.features,
                                              self.cfg.cache_dir, device, self.cfg.batch_size)
        return self._reference

    def measure(self, model: nn.Module, settings: RunSettings, image_shape: tuple[int, int, int],
                num_classes: int | None = None) -> QualityResult:
        """The model's sample quality under the config (see the module docstring)."""
        reference = self.reference(settings.device)  # once per process, not one model's cost
        start = time.perf_counter()
        samples = draw_samples(model, self.cfg, settings, image_shape, num_classes)
        features = self.features.embed(samples, settings.device, self.cfg.batch_size)
        return QualityResult(self.score(features, reference), time.perf_counter() - start, self.describe(reference))

    def score(self, features: np.ndarray, reference: FeatureStats) -> dict[str, float]:
        """The asked-for distances of generated `features` to the reference."""
        cfg, values = self.cfg, {}
        if "fd" in cfg.metrics:
            values["fd"] = frechet_distance(*FeatureStats.of(features).gaussian, *reference.gaussian)
            rounds = cfg.noise_rounds if cfg.noise_rounds is not None else 10 if features.shape[1] <= 512 else 0
            if rounds >= 2:
                values["fd_noise"] = fd_noise(features, reference, rounds, cfg.seed)
        if "kid" in cfg.metrics:
            values["kid"] = kernel_distance(features, reference.features, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
        if "sample_precision" in cfg.metrics or "sample_recall" in cfg.metrics:
            real = reference.features
            if real.shape[0] > features.shape[0]:  # equal set sizes, as Kynkäänniemi et al. compare them
                real = real[np.random.default_rng(cfg.seed).choice(real.shape[0], features.shape[0], replace=False)]
            precision, recall = precision_recall(features, real, cfg.k)
            values.update({m: v for m, v in (("sample_precision", precision), ("sample_recall", recall))
                           if m in cfg.metrics})
        return values

    def describe(self, reference: FeatureStats) -> dict[str, Any]:
        cfg = self.cfg
        return {"features": self.features.name, "features_key": self.features.key, "num_samples": cfg.num_samples,
                "reference": cfg.reference, "reference_images": int(reference.features.shape[0]),
                "sampler": cfg.sampler.model_dump(mode="json"), "seed": cfg.seed}
