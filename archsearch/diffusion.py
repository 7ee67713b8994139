"""Gaussian diffusion in discrete time: noise schedules, the training loss, and samplers.

The denoiser is any module called as `model(x_t, t, class_labels=None)` with x_t of shape
(B, C, H, W) in data units ([-1, 1] images plus noise) and t a float tensor (B,) of timesteps in
[0, T). It returns C channels (eps or v, per `prediction`), or 2C channels when it also predicts
a variance (ADM's learned sigma): then only the first C are used, and samplers use the fixed
posterior variance.

    schedule = NoiseSchedule.create("cosine", 1000).to(device)
    loss = training_loss(model, x0, None, schedule, "eps", generator)   # scalar, on device
    x = ddim_sample(model, (16, 1, 16, 16), schedule, steps=50, generator=g)

With ab = alphas_cumprod[t]: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, and v = sqrt(ab) eps -
sqrt(1 - ab) x0 (Salimans & Ho, 2022). A negative class label (`NULL_LABEL`) means "no class":
archsearch.nn's U-Net then adds no class embedding, which is the unconditional model of
classifier-free guidance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "NULL_LABEL", "NoiseSchedule", "q_sample", "v_target", "model_prediction", "to_eps", "to_x0", "training_loss",
    "ddpm_sample", "ddim_sample", "sample_timesteps", "sampler_step",
]

NULL_LABEL = -1  # "no class": dropped labels in training, the unconditional half of guidance


@dataclass(frozen=True)
class NoiseSchedule:
    """betas and alphas_cumprod (T,), computed in float64 and stored as float32 tensors."""

    kind: str
    betas: Tensor
    alphas_cumprod: Tensor

    @classmethod
    def create(cls, kind: str, num_timesteps: int = 1000) -> NoiseSchedule:
        """`linear`: DDPM's betas 1e-4..0.02 (scaled by 1000/T as in ADM); `cosine`: Nichol & Dhariwal."""
        T = num_timesteps
        if kind == "linear":
            scale = 1000.0 / T  # keeps the total noise of the 1000-step schedule for other T
            betas = torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008

            def alpha_bar(u: Tensor) -> Tensor:
                return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

            steps = torch.arange(T + 1, dtype=torch.float64) / T
            betas = (1 - alpha_bar(steps[1:]) / alpha_bar(steps[:-1])).clamp(max=0.999)
        else:
            raise ValueError(f"unknown noise schedule {kind!r}; use 'linear' or 'cosine'")
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        return cls(kind, betas.float(), alphas_cumprod.float())

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    def to(self, device: torch.device | str) -> NoiseSchedule:
        return NoiseSchedule(self.kind, self.betas.to(device), self.alphas_cumprod.to(device))

    def ab(self, t: Tensor) -> Tensor:
        """alphas_cumprod at integer timesteps t (B,), shaped (B, 1, 1, 1) for broadcasting."""
        return self.alphas_cumprod[t].view(-1, 1, 1, 1)


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, schedule: NoiseSchedule) -> Tensor:
    """Noise clean images x0 (B, C, H, W) to timesteps t (B,) with the given noise."""
    ab = schedule.ab(t)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def v_target(x0: Tensor, noise: Tensor, ab: Tensor) -> Tensor:
    """The v-prediction target sqrt(ab) eps - sqrt(1 - ab) x0."""
    return ab.sqrt() * noise - (1 - ab).sqrt() * x0


def to_eps(pred: Tensor, x_t: Tensor, ab: Tensor, prediction: str) -> Tensor:
    """The noise implied by a model output of the given prediction type."""
    if prediction == "eps":
        return pred
    return (1 - ab).sqrt() * x_t + ab.sqrt() * pred


def to_x0(pred: Tensor, x_t: Tensor, ab: Tensor, prediction: str) -> Tensor:
    """The clean image implied by a model output of the given prediction type."""
    if prediction == "eps":
        return (x_t - (1 - ab).sqrt() * pred) / ab.sqrt()
    return ab.sqrt() * x_t - (1 - ab).sqrt() * pred


def model_prediction(model: nn.Module, x_t: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
    """Call the denoiser and return its prediction in float32, dropping a learned-variance half."""
    out = model(x_t, t.float(), class_labels=labels)
    C = x_t.shape[1]
    if out.shape[1] == 2 * C:  # (B, 2C, H, W): prediction then variance
        out = out[:, :C]
    elif out.shape[1] != C:
        raise ValueError(f"the model returned {out.shape[1]} channels for {C} input channels; expected {C} or {2 * C}")
    return out.float()


def training_loss(
    model: nn.Module,
    x0: Tensor,
    labels: Tensor | None,
    schedule: NoiseSchedule,
    prediction: str,
    generator: torch.Generator,
    class_dropout: float = 0.0,
) -> Tensor:
    """Mean squared error of the model's eps (or v) prediction at uniform random timesteps.

    Timesteps, noise and label dropout come from `generator` (on x0's device), so the loss is
    reproducible. With `class_dropout` > 0 each label becomes `NULL_LABEL` with that probability,
    which trains the unconditional model of classifier-free guidance. Returns a float32 scalar
    on the device (no host sync).
    """
    B, device = x0.shape[0], x0.device
    t = torch.randint(0, schedule.num_timesteps, (B,), device=device, generator=generator)
    noise = torch.randn(x0.shape, device=device, generator=generator, dtype=x0.dtype)
    if labels is not None and class_dropout > 0:
        drop = torch.rand((B,), device=device, generator=generator) < class_dropout
        labels = torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)
    x_t = q_sample(x0, t, noise, schedule)
    pred = model_prediction(model, x_t, t, labels)
    target = noise if prediction == "eps" else v_target(x0, noise, schedule.ab(t))
    return (pred - target.float()).square().mean()


def sample_timesteps(num_timesteps: int, steps: int | None, spacing: str = "even") -> list[int]:
    """Respaced timesteps in decreasing order (all T when steps is None or >= T).

    `even`: `steps` values from T-1 to 0 evenly (ADM's respacing for DDPM). `leading`: i*T/steps
    for i < steps, so the first step is T - T/steps (the DDIM paper and ADM's `ddimN`): at t = T-1
    the cosine schedule leaves sqrt(ab) ~ 5e-5, and an eps-model's x0 estimate there is its error
    times 2e4, which deterministic DDIM would keep as the image.
    """
    T = num_timesteps
    if steps is None or steps >= T:
        return list(range(T - 1, -1, -1))
    if spacing == "even":
        picked = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().unique().tolist()
    elif spacing == "leading":
        picked = sorted({i * T // steps for i in range(steps)})
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; use 'even' or 'leading'")
    return picked[::-1]


def sampler_step(x_t: Tensor, pred: Tensor, ab: Tensor, ab_prev: Tensor, eta: float, prediction: str,
                 noise: Tensor | None) -> Tensor:
    """One generalised DDIM step from ab to ab_prev (Song et al. 2021, eq. 12).

    The predicted x0 is clipped to [-1, 1] and eps recomputed from it, as in ADM. eta = 1 is
    ancestral DDPM with the posterior variance of the (respaced) schedule, and equals DDPM's
    posterior-mean step; eta = 0 is deterministic DDIM. `noise` may be None when eta = 0.
    """
    x0 = to_x0(pred, x_t, ab, prediction).clamp(-1, 1)
    eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    return x_prev + sigma * noise if noise is not None and eta > 0 else x_prev


@torch.no_grad()
def _sample_loop(
    model: nn.Module,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    timesteps: list[int],
    eta: float,
    generator: torch.Generator | None,
    labels: Tensor | None,
    prediction: str,
    guidance: Callable[[Tensor, Tensor], Tensor] | None,
    noise: Callable[[], Tensor] | None = None,
) -> Tensor:
    """Denoise pure noise along a decreasing list of timesteps; returns x0 in [-1, 1]. `noise()`,
    when given, draws each Gaussian tensor of `shape` (the start, then each step's) instead of
    `generator`: per-sample seeds (archsearch.quality.sampling)."""
    device = schedule.alphas_cumprod.device
    if noise is None:
        def noise():
            return torch.randn(shape, generator=generator, device=device)
    x = noise()
    ones = torch.ones(shape[0], dtype=torch.long, device=device)
    for i, t in enumerate(timesteps):
        last = i + 1 == len(timesteps)
        ab = schedule.alphas_cumprod[t]
        ab_prev = ab.new_tensor(1.0) if last else schedule.alphas_cumprod[timesteps[i + 1]]
        pred = guidance(x, ones * t) if guidance is not None else model_prediction(model, x, ones * t, labels)
        x = sampler_step(x, pred, ab, ab_prev, eta, prediction, noise() if eta > 0 and not last else None)
    return x


def _guided(model: nn.Module, labels: Tensor | None, scale: float):
    """A prediction function with classifier-free guidance, or None when guidance is off."""
    if labels is None or scale == 1.0:
        return None
    null = torch.full_like(labels, NULL_LABEL)

    def predict(x: Tensor, t: Tensor) -> Tensor:
        # One batched forward for the conditional and the unconditional halves.
        both = model_prediction(model, torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        return uncond + scale * (cond - uncond)

    return predict


def ddpm_sample(
    model: nn.Module,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    labels: Tensor | None = None,
    prediction: str = "eps",
    guidance_scale: float = 1.0,
    noise: Callable[[], Tensor] | None = None,
) -> Tensor:
    """Ancestral DDPM samples (B, C, H, W) in [-1, 1]; `steps` < T respaces the schedule."""
    guidance = _guided(model, labels, guidance_scale)
    timesteps = sample_timesteps(schedule.num_timesteps, steps)
    return _sample_loop(model, shape, schedule, timesteps, 1.0, generator, labels, prediction, guidance, noise)


def ddim_sample(
    model: nn.Module,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    steps: int = 50,
    generator: torch.Generator | None = None,
    labels: Tensor | None = None,
    prediction: str = "eps",
    eta: float = 0.0,
    guidance_scale: float = 1.0,
    noise: Callable[[], Tensor] | None = None,
) -> Tensor:
    """DDIM samples (B, C, H, W) in [-1, 1] over `steps` timesteps i*T/steps (leading spacing)."""
    guidance = _guided(model, labels, guidance_scale)
    timesteps = sample_timesteps(schedule.num_timesteps, steps, "leading")
    return _sample_loop(model, shape, schedule, timesteps, eta, generator, labels, prediction, guidance, noise)
