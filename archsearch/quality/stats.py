"""The distances between a generated and a real feature set: FD, KID, precision and recall.

    ref = FeatureStats.of(real_features)                 # mean, covariance (float64), the features
    frechet_distance(*FeatureStats.of(fake).gaussian, *ref.gaussian)
    kernel_distance(fake, real, subsets=100, subset_size=1000, seed=0)
    precision_recall(fake, real, k=3)

Numpy only, in float64. The Fréchet distance between N(mu1, S1) and N(mu2, S2) is
|mu1 - mu2|² + tr S1 + tr S2 - 2 tr (S1 S2)^½. Its trace term is taken from the eigenvalues of
the symmetric positive semi-definite S1^½ S2 S1^½, which has the same eigenvalues as S1 S2:
two symmetric eigendecompositions (`eigh`), each eigenvalue clipped at 0 where rounding made it
negative. This never produces the complex parts that `scipy.linalg.sqrtm` of the non-symmetric
product returns for nearly singular covariances (which FID code must check and discard), and it
stays accurate at 2048 dimensions with fewer samples than dimensions. A test holds it equal to
scipy's route and to torchmetrics' where those import.

KID is the unbiased estimate of MMD² with the kernel k(x, y) = (x·y / d + 1)³ (Bińkowski et al.
2018), averaged over random subsets, as torchmetrics and clean-fid compute it. Precision and
recall follow Kynkäänniemi et al. 2019: a set's manifold is the union of balls around each of
its points with the radius of its k-th nearest neighbour in the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FeatureStats", "frechet_distance", "kernel_distance", "precision_recall"]


@dataclass(frozen=True)
class FeatureStats:
    """A feature set and the Gaussian fitted to it (what the reference cache stores)."""

    mu: np.ndarray          # (d,) float64
    sigma: np.ndarray       # (d, d) float64, the unbiased covariance
    features: np.ndarray    # (n, d) float32, for KID and precision/recall

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors of shape (n, d); got {x.shape}")
        return cls(x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), x.astype(np.float32))

    @property
    def gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mu, self.sigma


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet (2-Wasserstein) distance between two Gaussians; see the module docstring."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} "
                         f"and {sigma2.shape}")
    root = _sqrt_psd(sigma1)
    product = root @ sigma2 @ root
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt, 0.0))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_distance(fake: np.ndarray, real: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> float:
    """KID: the mean over `subsets` random subsets (of min(subset_size, both set sizes) each,
    drawn without replacement from a generator seeded by `seed`) of the unbiased MMD²."""
    x, y = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 images in each set; got {x.shape[0]} and {y.shape[0]}")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        total += _mmd2_unbiased(x[rng.choice(x.shape[0], size, replace=False)],
                                y[rng.choice(y.shape[0], size, replace=False)])
    return total / subsets


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.clip(d, 0, None)


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's squared distance to its k-th nearest other point of the set."""
    d = _squared_distances(points, points)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _coverage(queries: np.ndarray, points: np.ndarray, k: int) -> float:
    """The share of `queries` inside the union of the k-NN balls of `points`."""
    radii = _radii(points, k)
    inside = np.zeros(queries.shape[0], dtype=bool)
    for start in range(0, queries.shape[0], 1024):  # bounded memory: 1024 x n distances at a time
        block = _squared_distances(queries[start:start + 1024], points)
        inside[start:start + 1024] = (block <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall): the share of generated features inside the real manifold, and of
    real features inside the generated one (Kynkäänniemi et al. 2019)."""
    x, y = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    if min(x.shape[0], y.shape[0]) <= k:
        raise ValueError(f"precision and recall with k = {k} need more than {k} images in each set; "
                         f"got {x.shape[0]} and {y.shape[0]}")
    return _coverage(x, y, k), _coverage(y, x, k)
