"""Learning-curve extrapolation: the power law with offset recovers known parameters."""

import numpy as np
import pytest

from archsearch.extrapolate import extrapolate, fit_power_law


@pytest.mark.parametrize("a, b, c", [(0.05, 2.0, 0.7), (0.0, 1.0, 0.3), (0.4, 5.0, 1.5)])
def test_the_fit_recovers_the_parameters_of_an_exact_power_law(a, b, c):
    steps = np.arange(20, 201, 20)
    law = fit_power_law(steps, a + b * steps ** -c)
    assert law.a == pytest.approx(a, abs=2e-3) and law.c == pytest.approx(c, rel=0.02)
    assert law.at(2000) == pytest.approx(a + b * 2000 ** -c, rel=0.01)
    assert law.rmse < 1e-3


def test_with_noise_the_prediction_stays_close():
    rng = np.random.default_rng(0)
    steps = np.arange(20, 601, 20)
    truth = 0.04 + 1.5 * steps ** -0.6
    noisy = truth * (1 + 0.02 * rng.standard_normal(steps.size))
    assert extrapolate(steps, noisy, 2000) == pytest.approx(0.04 + 1.5 * 2000 ** -0.6, rel=0.1)


def test_a_flat_or_rising_curve_is_fitted_flat_and_too_few_points_are_refused():
    assert fit_power_law([20, 40, 60], [0.2, 0.2, 0.2]).at(2000) == pytest.approx(0.2)
    assert fit_power_law([20, 40, 60], [0.1, 0.2, 0.3]).at(2000) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_law([20, 40], [0.3, 0.2])
