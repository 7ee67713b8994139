"""The mathematics of sample quality: FD, KID, precision and recall against known answers and
the well-kept implementations (scipy's sqrtm route; torchmetrics' where it imports)."""

import itertools

import numpy as np
import pytest

from archsearch.quality.stats import FeatureStats, frechet_distance, kernel_distance, precision_recall


def test_fd_equals_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("d, n", [(2048, 3000), (256, 200)])  # full rank; and fewer samples than dimensions
def test_fd_equals_scipys_sqrtm_route_on_full_covariances(d, n):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d)) @ (np.eye(d) + 0.1 * rng.standard_normal((d, d))) + 0.3
    fx, fy = FeatureStats.of(x), FeatureStats.of(y)
    root = scipy_linalg.sqrtm(fx.sigma @ fy.sigma)
    if np.iscomplexobj(root):  # what FID code does: drop a negligible imaginary part
        assert np.abs(root.imag).max() < 1e-3 * np.abs(root.real).max()
        root = root.real
    expected = ((fx.mu - fy.mu) ** 2).sum() + np.trace(fx.sigma) + np.trace(fy.sigma) - 2 * np.trace(root)
    assert frechet_distance(*fx.gaussian, *fy.gaussian) == pytest.approx(expected, rel=1e-6)


def test_fd_stays_finite_and_non_negative_on_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 128))  # rank 19 of 128
    s = FeatureStats.of(x)
    assert frechet_distance(*s.gaussian, *s.gaussian) == pytest.approx(0, abs=1e-7)
    y = FeatureStats.of(rng.standard_normal((20, 128)) + 1)
    assert 0 < frechet_distance(*s.gaussian, *y.gaussian) < np.inf


def test_fd_equals_torchmetrics():
    fid = pytest.importorskip("torchmetrics.image.fid", reason="torchmetrics is not installed")
    import torch

    rng = np.random.default_rng(3)
    x, y = FeatureStats.of(rng.standard_normal((500, 64))), FeatureStats.of(rng.standard_normal((500, 64)) * 1.3 + 0.2)
    theirs = fid._compute_fid(*(torch.from_numpy(v) for v in (x.mu, x.sigma, y.mu, y.sigma)))
    assert frechet_distance(*x.gaussian, *y.gaussian) == pytest.approx(float(theirs), rel=1e-6)


def _naive_unbiased_mmd2(x, y):
    """O(n²) loops: the unbiased MMD² with the cubic polynomial kernel (x·y/d + 1)³."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_equals_the_naive_unbiased_mmd2_with_the_cubic_kernel():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((30, 8)), rng.standard_normal((30, 8)) + 0.5
    # One subset of all 30: every subset is the whole set, in some order.
    assert kernel_distance(x, y, subsets=1, subset_size=30) == pytest.approx(_naive_unbiased_mmd2(x, y), rel=1e-9)
    # Subsets: the mean of the naive estimate over the same draws.
    rng2 = np.random.default_rng(7)
    draws = [(rng2.choice(30, 10, replace=False), rng2.choice(30, 10, replace=False)) for _ in range(5)]
    expected = np.mean([_naive_unbiased_mmd2(x[i], y[j]) for i, j in draws])
    assert kernel_distance(x, y, subsets=5, subset_size=10, seed=7) == pytest.approx(expected, rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(5)
    same = kernel_distance(rng.standard_normal((400, 16)), rng.standard_normal((400, 16)), subsets=20, subset_size=200)
    apart = kernel_distance(rng.standard_normal((400, 16)), rng.standard_normal((400, 16)) + 1, subsets=20,
                            subset_size=200)
    assert abs(same) < 0.05 < apart


def test_precision_and_recall_on_points_whose_answer_is_known():
    real = np.arange(10, dtype=float)[:, None]            # k = 1: every real ball has radius 1
    fake = np.array([0, 1, 2, 3, 4, 100, 101, 102, 103, 104], dtype=float)[:, None]
    # Half of the fake points lie on real ones; the reals within 1 of a fake point are 0..5.
    assert precision_recall(fake, real, k=1) == pytest.approx((0.5, 0.6))
    assert precision_recall(real, real, k=1) == (1.0, 1.0)
    assert precision_recall(real + 1000, real, k=3) == (0.0, 0.0)


def test_too_few_points_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="more than 3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.of(np.zeros((1, 4)))
