"""Sample quality: Fréchet distance (FID with Inception's features), KID, precision and recall.

    from archsearch.quality import QualityPhase
    phase = QualityPhase(space.eval.quality, data)          # per process: features and reference statistics
    phase.measure(model, settings, (1, 16, 16)).values      # {'fd': ..., 'kid': ..., ...}

`stats` holds the mathematics (numpy), `features` the feature networks (digits built in,
inception, dinov2, module:function), `reference` the cached statistics of the real images,
`phase` the sampling and the measurement. What a space asks for is archsearch.schema.quality.
"""

from .features import FeatureNetwork, check_features, load_features
from .phase import QualityPhase, QualityResult, draw_samples, sample_seed
from .reference import reference_file, reference_stats
from .stats import FeatureStats, frechet_distance, kernel_distance, precision_recall

__all__ = ["FeatureNetwork", "FeatureStats", "QualityPhase", "QualityResult", "check_features", "draw_samples",
           "frechet_distance", "kernel_distance", "load_features", "precision_recall", "reference_file",
           "reference_stats", "sample_seed"]
