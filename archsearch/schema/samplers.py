"""The samplers that draw images from a trained denoiser (sample grids, the sample-quality phase).
Imports no torch: archsearch.diffusion runs them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from archsearch.schema._base import Model

__all__ = ["DDPMSampler", "DDIMSampler", "Sampler"]


class DDPMSampler(Model):
    """Ancestral DDPM sampling with the posterior variance; fewer steps respace the schedule.

    The default for grids: its fresh noise at each step washes out the poor x0 guesses that a
    briefly trained eps-model makes at high noise, which deterministic DDIM keeps.
    """

    kind: Literal["ddpm"] = Field("ddpm", description="Sampler kind.")
    steps: int | None = Field(100, ge=1, le=10**6, description="Sampling steps over evenly respaced timesteps; null = all T.")


class DDIMSampler(Model):
    """DDIM sampling over evenly respaced timesteps (eta = 0: deterministic given the start noise)."""

    kind: Literal["ddim"] = Field("ddim", description="Sampler kind.")
    steps: int = Field(50, ge=1, le=10**6, description="Sampling steps over respaced timesteps.")
    eta: float = Field(0.0, ge=0, le=1, description="Stochasticity: 0 = deterministic DDIM, 1 = DDPM-like.")


Sampler = Annotated[DDPMSampler | DDIMSampler, Field(discriminator="kind")]
