"""The fixed-noise validation protocol: archsearch's quality objective.

Validation losses compare across architectures, trials and devices only if every model denoises
exactly the same inputs. `ValidationProtocol` therefore draws everything once, on the CPU, from
its own seed (independent of the training seed), and keeps it:

- images: the first `num_images` of the validation split;
- timesteps: K = `timesteps` values evenly spread over [0, T) at bucket midpoints,
  t_k = floor((k + 1/2) T / K);
- pairs: image i is noised at the R = `timesteps_per_image` timesteps t_{(iR + r) mod K},
  r < R. The rotation gives every timestep the same number of images (+-1) at a cost of N*R
  forward passes instead of N*K; R = K is the full cross product;
- noise: one standard normal draw per pair from `torch.Generator().manual_seed(noise_seed)`.

The loss is the eps-MSE per pair, averaged per timestep, then over timesteps (each timestep
weighs the same, whatever its image count). Buckets split [0, T) into `buckets` equal ranges,
low noise (small t) first; a bucket's loss is the mean of its timesteps' losses. A v-prediction
model's output is converted to eps before the MSE, so eps- and v-models compare (its eps-error
is sqrt(ab) times its v-error).

    protocol = ValidationProtocol(val_images, val_labels, settings.schedule, eval_cfg)
    result = protocol.evaluate(model, settings)         # EvalResult(val_loss, val_loss_buckets, ...)

`settings` (archsearch.settings.RunSettings) say the device, precision, memory format and
prediction target; the protocol's own schedule noised the inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from archsearch.device import autocast_context
from archsearch.diffusion import NoiseSchedule, model_prediction, q_sample, to_eps
from archsearch.errors import ConfigError
from archsearch.schema.train import EvalConfig
from archsearch.settings import RunSettings

__all__ = ["EvalResult", "ValidationProtocol", "model_num_classes"]


def model_num_classes(model: nn.Module) -> int | None:
    """The number of classes of a class-conditional model, else None.

    Read from the model's `num_classes` attribute, or its `config.num_classes` (archsearch's
    UNet). Only such models receive labels; unconditional ones get `class_labels=None`.
    """
    found = getattr(model, "num_classes", None)
    if found is None:
        found = getattr(getattr(model, "config", None), "num_classes", None)
    return found or None


@dataclass(frozen=True)
class EvalResult:
    """Validation losses of one model under the protocol."""

    val_loss: float                            # mean over timesteps of the per-timestep eps-MSE
    val_loss_buckets: list[float]              # per noise bucket, low noise (small t) first
    bucket_ranges: list[tuple[int, int]]       # [t_lo, t_hi) of each bucket
    per_timestep: list[tuple[int, float]]      # (t, eps-MSE) for each evaluated timestep
    num_pairs: int                             # (image, timestep, noise) triples evaluated
    fingerprint: str                           # identifies the protocol's inputs

    def to_dict(self) -> dict:
        return asdict(self)


class ValidationProtocol:
    """Fixed validation inputs (noised images, their noise and timesteps) built once per study."""

    def __init__(self, val_images: Tensor, val_labels: Tensor | None, schedule: NoiseSchedule, cfg: EvalConfig):
        T = schedule.num_timesteps
        images = val_images[: cfg.num_images].detach().to("cpu", torch.float32)
        N, K, R = images.shape[0], cfg.timesteps, cfg.timesteps_per_image
        if K > T:
            raise ConfigError("eval.timesteps", f"{K} exceeds the schedule's {T} timesteps; use at most {T}")
        if N == 0:
            raise ConfigError("data", "the validation split is empty; hold out some images for validation")
        if N * R < K:
            raise ConfigError(
                "eval.timesteps_per_image",
                f"{N} validation images x {R} timesteps per image cannot cover {K} timesteps; "
                f"use timesteps_per_image >= {-(-K // N)} or fewer timesteps",
            )
        self.cfg = cfg
        self.schedule = schedule.to("cpu")
        self.timesteps = ((torch.arange(K, dtype=torch.float64) + 0.5) * T / K).floor().long()  # (K,)
        # Pair p = i*R + r: image i at timestep index p mod K (a rotation over the timesteps).
        pair = torch.arange(N * R)
        self.image_index = pair // R                                    # (P,)
        self.timestep_index = pair % K                                  # (P,)
        t = self.timesteps[self.timestep_index]                         # (P,)
        gen = torch.Generator().manual_seed(cfg.noise_seed)
        x0 = images[self.image_index]                                   # (P, C, H, W)
        self.noise = torch.randn(x0.shape, generator=gen)               # (P, C, H, W)
        self.x_t = q_sample(x0, t, self.noise, self.schedule)           # (P, C, H, W)
        self.t = t
        self.labels = None if val_labels is None else val_labels[: N].to("cpu", torch.long)[self.image_index]
        edges = [T * b // cfg.buckets for b in range(cfg.buckets + 1)]
        self.bucket_ranges = [(edges[b], edges[b + 1]) for b in range(cfg.buckets)]
        self.timestep_bucket = torch.bucketize(self.timesteps, torch.tensor(edges[1:-1]), right=True)  # (K,)
        self.counts = torch.bincount(self.timestep_index, minlength=K).float()                      # (K,)
        self.fingerprint = self._fingerprint()
        self._cache: tuple[torch.device, tuple[Tensor | None, ...]] | None = None

    @property
    def num_pairs(self) -> int:
        return self.t.shape[0]

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for tensor in (self.x_t, self.noise, self.t) + (() if self.labels is None else (self.labels,)):
            h.update(tensor.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def _on(self, device: torch.device) -> tuple[Tensor | None, ...]:
        # Keep one device copy: the protocol is evaluated several times per run (learning curve).
        if self._cache is None or self._cache[0] != device:
            tensors = (self.x_t, self.noise, self.t, self.timestep_index, self.schedule.alphas_cumprod, self.labels)
            self._cache = (device, tuple(None if x is None else x.to(device) for x in tensors))
        return self._cache[1]

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, settings: RunSettings) -> EvalResult:
        """The model's eps-MSE on the fixed inputs, run as `settings` say (device, precision,
        memory format, prediction); the model is put in eval mode and restored."""
        device, precision, memory_format = settings.device, settings.precision, settings.memory_format
        x_t, noise, t, t_index, alphas_cumprod, labels = self._on(device)
        if not model_num_classes(model):
            labels = None
        K = self.cfg.timesteps
        sums = torch.zeros(K, device=device)
        was_training = model.training
        model.eval()
        try:
            for start in range(0, self.num_pairs, self.cfg.batch_size):
                sl = slice(start, start + self.cfg.batch_size)
                xb = x_t[sl].contiguous(memory_format=memory_format)
                with autocast_context(device, precision):
                    pred = model_prediction(model, xb, t[sl], None if labels is None else labels[sl])
                ab = alphas_cumprod[t[sl]].view(-1, 1, 1, 1)
                err = (to_eps(pred, x_t[sl], ab, settings.prediction) - noise[sl]).square().mean(dim=(1, 2, 3))  # (b,)
                sums.index_add_(0, t_index[sl], err)
        finally:
            model.train(was_training)
        per_t = (sums.cpu() / self.counts).tolist()  # the one host transfer of the evaluation
        buckets = [[] for _ in self.bucket_ranges]
        for k, b in enumerate(self.timestep_bucket.tolist()):
            buckets[b].append(per_t[k])
        return EvalResult(
            val_loss=sum(per_t) / K,
            val_loss_buckets=[sum(v) / len(v) if v else float("nan") for v in buckets],
            bucket_ranges=list(self.bucket_ranges),
            per_timestep=list(zip(self.timesteps.tolist(), per_t)),
            num_pairs=self.num_pairs,
            fingerprint=self.fingerprint,
        )
