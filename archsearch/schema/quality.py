"""QualityConfig: how sample quality is measured (`eval.quality`), the metric diffusion papers report.

    eval:
      quality:
        metrics: [fd, kid, sample_precision, sample_recall]
        features: auto            # digits for the digits data, inception otherwise; dinov2; module:function
        num_samples: 1000
        sampler: {kind: ddim, steps: 50}

Off unless asked for: a study asks by naming a quality metric as an objective or a constraint
(or by writing this section), `archsearch verify --quality` and `archsearch train --quality`
by their flag. The phase draws `num_samples` images from the trained model, one seed per sample
index (`seed`), so two models' distances differ by the model, not by the noise; maps them and
the data's real images through a feature network; and compares the two sets:

- `fd`: the Fréchet distance between Gaussians fitted to the two feature sets (FID when the
  features are Inception's, FD_DINOv2 with DINOv2's);
- `kid`: the kernel inception distance, the unbiased MMD² with the cubic polynomial kernel,
  averaged over `kid_subsets` random subsets of `kid_subset_size`;
- `sample_precision` and `sample_recall`: the share of generated samples inside the real images' k-NN
  manifold, and of real images inside the generated one (Kynkäänniemi et al. 2019, k = `k`).

The real images' statistics are computed once per data set, split, feature network and count,
and cached under `cache_dir`. Imports no torch (archsearch.quality does the work).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from archsearch.errors import excerpt

from ._base import MAX_COUNT, Model, Seed, tagged_union
from .data import UserPath
from .samplers import DDIMSampler, DDPMSampler

__all__ = ["QualityConfig", "QUALITY_METRICS", "BUILTIN_FEATURES", "DEFAULT_CACHE"]

from archsearch.metrics import QUALITY_METRICS  # noqa: E402 - every metric the phase measures, from the registry

QualityMetric = Literal[QUALITY_METRICS]  # the registry's names, so that an editor completes them
BUILTIN_FEATURES = ("auto", "digits", "inception", "dinov2")
DEFAULT_CACHE = "~/.cache/archsearch/quality"


class QualityConfig(Model):
    """The sample-quality phase of a trial: what is measured, with which features, on how many samples."""

    metrics: list[QualityMetric] = Field(
        list(QUALITY_METRICS), min_length=1,
        description="What is measured; all come from the same samples and features, so the extra ones cost little.",
    )
    features: str = Field(
        "auto",
        description="The feature network: digits (built in, for the digits data), inception (FID's InceptionV3, "
                    "needs its weights file and the `quality` extra), dinov2 (FD_DINOv2, the same), `module:function` "
                    "returning an nn.Module that maps images in [-1, 1] to feature vectors, or auto (digits for the "
                    "digits data, inception otherwise).",
    )
    features_weights: UserPath | None = Field(
        None,
        description="The feature network's weights file (inception, dinov2); null: the file under cache_dir "
                    "(`archsearch validate` says which).",
    )
    num_samples: int = Field(
        1000, ge=10, le=MAX_COUNT,
        description="Generated images scored. FD is biased upward at small counts, so compare distances at one count.",
    )
    reference: Literal["train", "val"] = Field(
        "train", description="Which split's real images the samples are compared with (FID practice: the training set).",
    )
    reference_samples: int | None = Field(
        None, ge=10, le=MAX_COUNT,
        description="Real images used for the reference statistics (the first ones of the split); null: all of them.",
    )
    sampler: tagged_union("ddim", DDIMSampler, DDPMSampler) = Field(  # `kind` may be left out: ddim
        default_factory=DDIMSampler, description="How samples are drawn (DDIM, 50 steps; `kind: ddpm` for ancestral).")
    batch_size: int = Field(500, ge=1, le=2**20, description="Images per sampling and feature batch.")
    seed: Seed = Field(0, description="Seed of the samples: sample i starts from noise seeded by (seed, i).")
    kid_subsets: int = Field(100, ge=1, le=10_000, description="Random subsets KID is averaged over.")
    kid_subset_size: int = Field(
        1000, ge=2, le=MAX_COUNT, description="Images per KID subset (at most the smaller of the two sets).",
    )
    noise_rounds: int | None = Field(
        None, ge=0, le=1000,
        description="Bootstrap resamplings of the generated samples that estimate fd's sampling noise (fd_noise: its "
                    "standard deviation); each costs one Fréchet distance. null: 10 when the features have at most "
                    "512 dimensions (digits), else 0 (inception, dinov2: measure it with benchmarks/quality_noise.py).",
    )
    k: int = Field(3, ge=1, le=1000, description="Nearest neighbours that define a manifold for precision and recall.")
    cache_dir: UserPath = Field(
        DEFAULT_CACHE, description="Folder of the cached reference statistics (shared by every study and worker).",
    )

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"{', '.join(sorted({m for m in value if value.count(m) > 1}))} listed twice; name each once")
        return value

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: str) -> str:
        if value in BUILTIN_FEATURES:
            return value
        module, colon, function = value.partition(":")
        names = [*module.split("."), function]
        if not colon or not all(part.isidentifier() for part in names):
            raise ValueError(f"unknown features {excerpt(value)}; use {', '.join(BUILTIN_FEATURES)} or "
                             "module:function (a function returning an nn.Module)")
        return value

    def resolved_features(self, source: str) -> str:
        """The feature network `auto` stands for with the data `source`."""
        if self.features != "auto":
            return self.features
        return "digits" if source == "digits" else "inception"
