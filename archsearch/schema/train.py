"""Config of the short training run (`TrainConfig`) and of the validation protocol (`EvalConfig`).

Both are sections of a study file (`train:` and `eval:`); their dotted field names are also the
`train.<field>` columns of the results table. Imports no torch: the device-dependent choices
(`precision`, `compile`, `channels_last` set to `auto`) are resolved by `archsearch.settings` once
the device is known.

    train:
      steps: 300            # or a wall-clock budget: `seconds: 60` (whichever ends first)
      schedule: cosine
      ema_decay: 0.999
    eval:
      num_images: 256
      timesteps: 20
      samples: {save: true, sampler: {kind: ddim, steps: 50}, rows: 8, cols: 8}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from archsearch.schema._base import MAX_COUNT, MAX_SECONDS, Model, Seed
from archsearch.schema.quality import QualityConfig
from archsearch.schema.samplers import DDIMSampler, DDPMSampler, Sampler

__all__ = ["TrainConfig", "EvalConfig", "SampleConfig", "DDPMSampler", "DDIMSampler"]

Auto = Literal["auto", "on", "off"]


class TrainConfig(Model):
    """A short, seeded diffusion training run: what is trained, for how long, and how."""

    steps: int = Field(300, ge=1, le=MAX_COUNT, description="Optimizer steps; the run stops here unless `seconds` ends it first.")
    seconds: float | None = Field(
        None, gt=0, le=MAX_SECONDS,
        description="Wall-clock budget for the training steps (evaluations not counted); whichever of `steps` "
                    "and `seconds` comes first ends the run. A time budget makes the step count device-dependent.",
    )
    batch_size: int = Field(64, ge=1, le=2**20, description="Images per optimizer step (used by the data loader that feeds the run).")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate, reached after `warmup_steps`.")
    lr_decay: Literal["cosine", "constant"] = Field(
        "cosine", description="After warm-up: cosine decay to 0 at `steps`, or constant. Decay follows steps, not seconds."
    )
    warmup_steps: int = Field(20, ge=0, le=MAX_COUNT, description="Steps of linear learning-rate warm-up from 0.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    beta2: float = Field(0.999, ge=0, lt=1, description="AdamW second-moment decay.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this value; null = no clipping.")
    ema_decay: float | None = Field(
        None, gt=0, lt=1,
        description="Exponential moving average of the weights (with a (1+n)/(10+n) warm-up); when set, the EMA "
                    "weights are evaluated and left in the model at the end. null = off.",
    )
    schedule: Literal["linear", "cosine"] = Field(
        "cosine", description="Noise schedule: DDPM's linear betas or Nichol & Dhariwal's cosine alpha-bar."
    )
    num_timesteps: int = Field(1000, ge=2, le=10**6, description="Number of diffusion timesteps T; the model sees t in [0, T).")
    prediction: Literal["eps", "v"] = Field(
        "eps", description="What the model predicts: the noise (eps) or v = sqrt(ab)*eps - sqrt(1-ab)*x0."
    )
    class_dropout: float = Field(
        0.0, ge=0, lt=1,
        description="Probability of replacing a label by the null label -1 (\"no class\", for classifier-free "
                    "guidance); only for class-conditional models.",
    )
    seed: Seed = Field(0, description="Seeds the training noise, timesteps and dropout: same config, seed and device give the same losses.")
    log_every: int = Field(
        20, ge=1, le=MAX_COUNT,
        description="Steps between host reads of the (device-accumulated) training loss: the loss-curve spacing and "
                    "the delay before a NaN/inf loss is noticed.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast on CUDA, fp32 on CPU. TF32 matmuls are on for CUDA either way."
    )
    compile: Auto = Field(
        "auto",
        description="torch.compile the model for training. auto = off everywhere (on CPU it cost minutes and ran "
                    "slower than eager; on CUDA turn it on after measuring).",
    )
    channels_last: Auto = Field(
        "auto", description="channels_last memory format. auto = on on CUDA, off on CPU (15x slower there)."
    )




class SampleConfig(Model):
    """The grid of generated samples written as samples.png."""

    save: bool = Field(False, description="Write a sample grid at the end of each training run.")
    sampler: Sampler = Field(default_factory=DDPMSampler, description="How samples are generated (DDPM, 100 steps).")
    rows: int = Field(8, ge=1, le=64, description="Rows of the grid.")
    cols: int = Field(8, ge=1, le=64, description="Columns of the grid (for class-conditional models, image i has class i % num_classes).")
    guidance_scale: float = Field(
        1.0, ge=0,
        description="Classifier-free guidance weight w (eps = eps_null + w (eps_cond - eps_null)); 1 = no guidance. "
                    "Needs a model trained with class_dropout > 0.",
    )
    seed: Seed = Field(0, description="Seed of the sampling noise, so grids of different models start alike.")


class EvalConfig(Model):
    """The fixed-noise validation protocol: identical inputs for every model of a study."""

    num_images: int = Field(256, ge=1, le=MAX_COUNT, description="Held-out images used (the first ones of the validation split; all if fewer).")
    timesteps: int = Field(20, ge=1, le=10**6, description="Timesteps evenly spread over [0, T) at which the loss is measured.")
    timesteps_per_image: int = Field(
        4, ge=1, le=10**6,
        description="Timesteps each image is noised at (a fixed rotation over the timesteps); = timesteps evaluates "
                    "every image at every timestep. Cost: num_images * timesteps_per_image forward passes.",
    )
    noise_seed: Seed = Field(1234, description="Seed of the validation noise; independent of the training seed.")
    batch_size: int = Field(256, ge=1, le=2**20, description="Images per forward pass during evaluation.")
    buckets: int = Field(5, ge=1, le=10**6, description="Noise-level buckets (low to high noise) of the per-bucket losses.")
    curve_points: int = Field(
        5, ge=0, le=10**4, description="Intermediate evaluations during training (evenly spread); 0 = only the final one."
    )
    samples: SampleConfig = Field(default_factory=SampleConfig, description="Sample-grid options.")
    quality: QualityConfig | None = Field(
        None,
        description="Sample quality (FD/FID, KID, precision, recall; see QualityConfig). null: measured only when an "
                    "objective or a constraint names one of its metrics (then with these defaults), or when "
                    "`verify --quality` / `train --quality` ask for it.",
    )

    @field_validator("timesteps_per_image")
    @classmethod
    def _per_image_le_timesteps(cls, value: int, info: ValidationInfo) -> int:
        timesteps = info.data.get("timesteps")
        if timesteps is not None and value > timesteps:
            raise ValueError(f"{value} exceeds timesteps ({timesteps}); use at most {timesteps}")
        return value

    @field_validator("buckets")
    @classmethod
    def _buckets_divide_timesteps(cls, value: int, info: ValidationInfo) -> int:
        timesteps = info.data.get("timesteps")
        if timesteps is not None and timesteps % value:
            raise ValueError(
                f"{value} buckets do not divide timesteps ({timesteps}) evenly; use a number of timesteps that is "
                f"a multiple of {value}"
            )
        return value
