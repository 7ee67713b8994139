"""The report's computations against hand-computed fronts, knees, hypervolumes and intervals."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from archsearch.report.effects import MISSING, bootstrap_median_ci, marginal_effects, value_label, varying_columns
from archsearch.report.hypervolume import hypervolume, hypervolume_history, reference_scale, to_costs
from archsearch.pareto import knee_index, knee_point, pareto_front, pareto_mask

NAN = float("nan")


# --------------------------------------------------------------------------- fronts


def test_front_keeps_ties_and_drops_nans_and_dominated_rows():
    values = [[1, 5], [2, 3], [2, 3], [3, 4], [NAN, 1], [4, 1]]
    assert pareto_mask(values, ["minimize", "minimize"]).tolist() == [True, True, True, False, False, True]


def test_front_with_a_maximized_objective():
    # loss (min), throughput (max): #2 loses to #0 in both; #3 ties #1 on speed with a worse loss.
    values = [[0.1, 100], [0.2, 300], [0.15, 50], [0.3, 300]]
    assert pareto_mask(values, ["minimize", "maximize"]).tolist() == [True, True, False, False]


def test_front_table_is_sorted_by_the_first_objective():
    df = pd.DataFrame({"number": [0, 1, 2, 3], "loss": [0.3, 0.1, 0.2, 0.25], "speed": [900, 100, 500, 400]})
    front = pareto_front(df, ["loss", "speed"], ["minimize", "maximize"])
    assert front["number"].tolist() == [1, 2, 0]


# --------------------------------------------------------------------------- knee


def test_knee_is_nearest_to_the_ideal_point_after_normalizing():
    # Normalized: (0,1) (.2,.4) (.3,.3) (1,0); distances 1, .447, .424, 1.
    values = np.array([[0, 10], [2, 4], [3, 3], [10, 0]], dtype=float)
    assert knee_index(values, ["minimize", "minimize"]) == 2
    flipped = values * [1, -1]
    assert knee_index(flipped, ["minimize", "maximize"]) == 2


def test_knee_ties_go_to_the_first_row_and_constant_objectives_count_zero():
    assert knee_index([[0, 1], [1, 0]], ["minimize", "minimize"]) == 0
    assert knee_index([[1, 5], [1, 3]], ["minimize", "minimize"]) == 1
    assert knee_index(np.empty((0, 2)), ["minimize", "minimize"]) is None


def test_knee_point_returns_the_row():
    front = pd.DataFrame({"number": [4, 7, 9], "loss": [0.1, 0.2, 0.4], "speed": [100, 450, 500]})
    # loss (0, .333, 1), speed cost (1, .125, 0): distances 1, .356, 1.
    assert int(knee_point(front, ["loss", "speed"], ["minimize", "maximize"])["number"]) == 7
    assert knee_point(front.iloc[0:0], ["loss", "speed"], ["minimize", "maximize"]) is None


# --------------------------------------------------------------------------- hypervolume


def test_hypervolume_2d_by_hand():
    assert hypervolume([[1, 3], [2, 1]], [4, 4]) == pytest.approx(3 * 1 + 2 * 2)
    # A dominated point, a point beyond the reference and a NaN row add nothing.
    assert hypervolume([[1, 3], [2, 1], [3, 3], [5, 0], [NAN, 0]], [4, 4]) == pytest.approx(7)
    # Two unit-overlapping boxes: 2 + 2 - 1.
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == pytest.approx(3)
    assert hypervolume(np.empty((0, 2)), [1, 1]) == 0.0


def test_hypervolume_1d_and_3d_by_hand():
    assert hypervolume([[3], [1]], [5]) == pytest.approx(4)
    assert hypervolume([[1, 1, 1]], [2, 2, 2]) == pytest.approx(1)
    # Boxes of 4 and 2 sharing the unit cube [1,2]^3.
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]) == pytest.approx(5)
    # Three boxes of 2; every pair and the triple share the unit cube: 6 - 3 + 1.
    assert hypervolume([[0, 1, 1], [1, 0, 1], [1, 1, 0]], [2, 2, 2]) == pytest.approx(4)


def _inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(k):
    rng = np.random.default_rng(k)
    for _ in range(5):
        points = rng.integers(0, 6, size=(6, k)).astype(float)
        ref = np.full(k, 6.0)
        assert hypervolume(points, ref) == pytest.approx(_inclusion_exclusion(points, ref))


def test_reference_point_and_normalized_hypervolume():
    values = np.array([[0.1, 300], [0.2, 200], [0.3, 100]])
    scale = reference_scale([values], ["minimize", "maximize"])
    # Worst value plus 10% of the range: loss .3 + .02, throughput 100 - 20.
    assert scale.reference_values == pytest.approx([0.32, 80])
    # The ideal point alone dominates the whole box up to (1.1, 1.1).
    assert scale.hypervolume(np.array([[0.1, 300]])) == pytest.approx(1.21)
    assert scale.hypervolume(np.array([[0.3, 100]])) == pytest.approx(0.01)
    assert to_costs(values, ["minimize", "maximize"])[0].tolist() == [0.1, -300]


def test_reference_spans_every_study():
    a, b = np.array([[0.2, 100]]), np.array([[0.1, 300], [0.4, 50]])
    scale = reference_scale([a, b], ["minimize", "maximize"])
    assert scale.reference_values == pytest.approx([0.4 + 0.03, 50 - 25])
    assert reference_scale([np.full((1, 2), NAN)], ["minimize", "maximize"]) is None


def test_hypervolume_history_grows_only_when_the_front_improves():
    values = np.array([[0.3, 100], [NAN, NAN], [0.1, 300], [0.2, 200]])
    scale = reference_scale([values], ["minimize", "maximize"])
    # (1,1) -> .1*.1; a failed trial changes nothing; (0,0) -> 1.21; (.5,.5) is dominated.
    assert hypervolume_history(values, scale) == pytest.approx([0.01, 0.01, 1.21, 1.21])


# --------------------------------------------------------------------------- bootstrap and effects


def test_bootstrap_of_a_constant_sample_has_zero_width():
    assert bootstrap_median_ci([0.5] * 7) == (0.5, 0.5, 0.5)


def test_bootstrap_of_three_values_by_hand():
    # A resampled median is 1 with probability 7/27 (two or three 1s), 3 likewise: the 2.5th and
    # 97.5th percentiles of 2000 resampled medians are 1 and 3.
    assert bootstrap_median_ci([3, 1, 2]) == (2.0, 1.0, 3.0)


def test_bootstrap_interval_contains_the_median_and_is_seeded():
    sample = np.random.default_rng(1).normal(10, 2, size=40)
    median, low, high = bootstrap_median_ci(sample)
    assert low < median < high and median == pytest.approx(np.median(sample))
    assert high - low < 4  # roughly 2 * 1.96 * 1.25 * 2 / sqrt(40) ≈ 1.5 wide
    assert bootstrap_median_ci(sample, seed=0) == bootstrap_median_ci(sample, seed=0)
    assert bootstrap_median_ci(list(sample) + [NAN]) == (median, low, high)
    assert all(np.isnan(v) for v in bootstrap_median_ci([]))


def test_marginal_effects_group_by_value_with_missing_fields_apart():
    df = pd.DataFrame({
        "architecture.skip.combine": ["add", "concat", "add", None],
        "architecture.levels.2.width": [32.0, 8.0, 16.0, NAN],
        "val_loss": [1.0, 2.0, 3.0, 4.0],
        "train_throughput": [10.0, 20.0, 30.0, 40.0],
    })
    effects = marginal_effects(df, ["architecture.skip.combine", "architecture.levels.2.width"],
                               ["val_loss", "train_throughput"])
    skip = effects[effects["field"] == "architecture.skip.combine"]
    assert skip["value"].tolist() == ["add", "concat", MISSING]
    assert skip["n"].tolist() == [2, 1, 1]
    assert skip["val_loss"].tolist() == [2.0, 2.0, 4.0]
    assert skip["train_throughput"].tolist() == [20.0, 20.0, 40.0]
    assert skip.iloc[1][["val_loss_lo", "val_loss_hi"]].tolist() == [2.0, 2.0]  # one trial: no spread
    widths = effects[effects["field"] == "architecture.levels.2.width"]
    assert widths["value"].tolist() == ["8", "16", "32", MISSING]  # numeric order, 32.0 shown as 32


def test_varying_columns_and_labels():
    df = pd.DataFrame({"architecture.a": [1, 1], "architecture.b": [1, 2], "train.lr": [1e-3, NAN], "val_loss": [1, 2],
                       "architecture.schema_version": [1, 2], "arch.c": [1, 2]})
    assert varying_columns(df) == ["architecture.b", "train.lr"]
    assert [value_label(v) for v in (True, 32.0, 0.002, NAN, "add")] == ["true", "32", "0.002", MISSING, "add"]


def test_marginal_effects_bin_a_continuous_field_into_quartiles():
    df = pd.DataFrame({"train.lr": np.linspace(1, 8, 8), "val_loss": np.arange(8.0)})
    effects = marginal_effects(df, ["train.lr"], ["val_loss"], max_values=6)
    assert effects["n"].tolist() == [2, 2, 2, 2]
    assert effects["value"].iloc[0].startswith("[") and effects["val_loss"].tolist() == [0.5, 2.5, 4.5, 6.5]
