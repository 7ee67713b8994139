"""Learning-curve extrapolation: the loss a run would reach at a longer budget, from its first steps.

    law = fit_power_law([20, 40, 60], [0.31, 0.19, 0.15])     # L(t) = a + b * t^-c
    law.at(2000)                                              # the extrapolated loss at step 2000
    extrapolate([20, 40, 60], [0.31, 0.19, 0.15], 2000)        # the same, in one call

The model is a power law with an offset, the form learning curves of neural networks follow over
a wide range of budgets (Hestness et al. 2017; Domhan et al. 2015 use it among their
parametric family): a is the loss the run tends to, b and c how fast it gets there. It is fitted
by least squares over a grid of exponents c (log-spaced from `C_RANGE[0]` to `C_RANGE[1]`),
solving for (a, b) in closed form at each, then refining c around the best grid point, so the
fit has no starting point to get wrong and always returns; a is kept at or above 0 and b at or above 0 (a loss that rises is fitted flat).

Numpy only: benchmarks/proxy_fidelity.py ranks architectures by it, and a study could.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLaw", "fit_power_law", "extrapolate", "C_RANGE"]

C_RANGE = (0.02, 4.0)
_GRID = np.geomspace(*C_RANGE, 400)


@dataclass(frozen=True)
class PowerLaw:
    """L(t) = a + b * t^-c, and how well it fits (the root-mean-square residual)."""

    a: float
    b: float
    c: float
    rmse: float

    def at(self, step: float) -> float:
        return float(self.a + self.b * float(step) ** -self.c)


def _solve(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(a, b, sse) of y ≈ a + b x with a ≥ 0 and b ≥ 0."""
    design = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    if b < 0:  # no decrease: the flat fit
        a, b = max(float(y.mean()), 0.0), 0.0
    elif a < 0:  # through the origin
        b = max(float(x @ y / (x @ x)), 0.0)
        a = 0.0
    residual = y - (a + b * x)
    return float(a), float(b), float(residual @ residual)


def fit_power_law(steps: Sequence[float], losses: Sequence[float]) -> PowerLaw:
    """The least-squares power law with offset through (step, loss) points (steps ≥ 1, at least 3)."""
    t, y = np.asarray(steps, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(t) & (t >= 1)
    t, y = t[keep], y[keep]
    if t.size < 3:
        raise ValueError(f"a power law with offset needs at least 3 points; got {t.size}")
    errors = [_solve(t ** -c, y)[2] for c in _GRID]
    i = int(np.argmin(errors))
    # Refine c between the grid's neighbours of the best point (golden-section search): over a
    # budget 30x the fitted range, 1% in c moves the prediction by several percent.
    lo, hi = _GRID[max(i - 1, 0)], _GRID[min(i + 1, len(_GRID) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        c1, c2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if _solve(t ** -c1, y)[2] <= _solve(t ** -c2, y)[2]:
            hi = c2
        else:
            lo = c1
    c = float((lo + hi) / 2)
    a, b, sse = _solve(t ** -c, y)
    return PowerLaw(a, b, c, float(np.sqrt(sse / t.size)))


def extrapolate(steps: Sequence[float], losses: Sequence[float], at: float) -> float:
    """The loss at step `at` that the power law fitted to (steps, losses) predicts."""
    return fit_power_law(steps, losses).at(at)
