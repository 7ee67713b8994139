"""The numbers of `archsearch verify` without any training: Kendall's τ, Spearman's ρ and their
bootstrap intervals against hand-computed values and scipy, front recall and precision, and which
trials are picked for retraining."""

import math

import numpy as np
import pandas as pd
import pytest

from archsearch.pareto import pareto_layers
from archsearch.verify.selection import DOMINATED, FRONT, retrain_plan, select_trials, spread_positions
from archsearch.verify.stats import (Agreement, agreement, average_ranks, bootstrap_interval, bootstrap_values,
                                     front_agreement, kendall_tau, spearman_rho)
from archsearch.errors import ConfigErrors
from archsearch.verify.remeasure import interleave, measure_rounds


def test_tau_and_rho_of_two_swapped_neighbours():
    # x = 1..5, y = [1, 3, 2, 5, 4]: of the 10 pairs, (2,3) and (4,5) are discordant: τ = (8 - 2) / 10.
    # Rank differences d = [0, 1, -1, 1, -1], Σd² = 4: ρ = 1 - 6·4 / (5·24) = 0.8.
    x, y = [1, 2, 3, 4, 5], [1, 3, 2, 5, 4]
    assert kendall_tau(x, y) == pytest.approx(0.6)
    assert spearman_rho(x, y) == pytest.approx(0.8)


def test_ties_count_as_tau_b_and_average_ranks():
    # x = [1, 2, 2, 3], y = [1, 2, 3, 3]: 4 concordant pairs, one tied in x, one tied in y, of 6:
    # τ_b = 4 / √(5·5) = 0.8. Ranks x [1, 2.5, 2.5, 4], y [1, 2, 3.5, 3.5]; centred, Σ rx·ry = 3.75,
    # Σ rx² = Σ ry² = 4.5: ρ = 0.8333.
    x, y = [1, 2, 2, 3], [1, 2, 3, 3]
    assert average_ranks(x).tolist() == [1, 2.5, 2.5, 4]
    assert kendall_tau(x, y) == pytest.approx(0.8)
    assert spearman_rho(x, y) == pytest.approx(3.75 / 4.5)


def test_reversed_constant_and_unpaired_values():
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert math.isnan(kendall_tau([1, 2, 3], [5, 5, 5])) and math.isnan(spearman_rho([1, 2, 3], [5, 5, 5]))
    assert math.isnan(kendall_tau([1], [2]))
    assert kendall_tau([1, 2, np.nan, 3], [1, 2, 0, 3]) == pytest.approx(1)  # a trial without both losses is left out
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


@pytest.mark.parametrize("seed", range(4))
def test_tau_and_rho_agree_with_scipy(seed):
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=12).astype(float)  # ties on purpose
    y = x + rng.integers(-3, 4, size=12)
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)
    assert spearman_rho(x, y) == pytest.approx(spearmanr(x, y).statistic)


def test_the_bootstrap_resamples_pairs_as_computed_by_hand():
    # x = [1, 2, 3], y = [1, 3, 2]: of the 27 equally likely resamples, 3 repeat one pair (τ undefined,
    # left out); 6 hold all three pairs (τ = (2 - 1)/3); 18 hold two pairs, one twice, where τ_b is the
    # sign of that pair: +1 for {1, 2} and {1, 3} (12 resamples), -1 for {2, 3} (6). So, of the 24 kept:
    # P(τ = -1) = 1/4, P(τ = 1/3) = 1/4, P(τ = 1) = 1/2, and the 95% interval is [-1, 1].
    values = bootstrap_values([1, 2, 3], [1, 3, 2], kendall_tau, resamples=20000, seed=1)
    assert len(values) == pytest.approx(20000 * 24 / 27, rel=0.02)
    shares = [np.mean(np.isclose(values, v)) for v in (-1.0, 1 / 3, 1.0)]
    assert shares == pytest.approx([0.25, 0.25, 0.5], abs=0.015)
    assert bootstrap_interval([1, 2, 3], [1, 3, 2], kendall_tau) == pytest.approx((-1.0, 1.0))


def test_bootstrap_intervals_are_seeded_and_need_three_pairs():
    x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    y = [0.11, 0.25, 0.21, 0.38, 0.52, 0.49]
    first = bootstrap_interval(x, y, kendall_tau)
    assert first == bootstrap_interval(x, y, kendall_tau)  # seed 0 by default: a rerun says the same
    assert first[0] <= kendall_tau(x, y) <= first[1] <= 1
    assert bootstrap_interval(x, x, spearman_rho) == pytest.approx((1.0, 1.0))  # every resample in order
    assert bootstrap_interval([1, 2], [1, 2], kendall_tau) is None


def test_agreement_formats_as_the_verdict_writes_it():
    assert Agreement("τ", 0.8, (0.6, 0.9333), 9).format() == "τ = 0.8 [0.6, 0.93]"
    assert Agreement("τ", 1.0, None, 2).format() == "τ = 1 [no interval: 2 pairs]"
    assert Agreement("ρ", math.nan, None, 1).format() == "ρ undefined (1 pairs)"
    a = agreement("τ", kendall_tau, [1, 2, 3, 4, 5], [1, 3, 2, 5, 4])
    assert (a.value, a.n) == (pytest.approx(0.6), 5) and a.interval is not None


def test_front_recall_and_precision():
    # Short front {1, 3, 5, 7}; at the long budget {1, 5, 8}: 2 stay (recall 2/4), and 2 of the 3 on
    # the long-budget front were on the short one (precision 2/3).
    assert front_agreement({1, 3, 5, 7}, {1, 5, 8}) == pytest.approx((0.5, 2 / 3))
    assert front_agreement([2], [2]) == (1.0, 1.0)
    recall, precision = front_agreement([], [4])
    assert math.isnan(recall) and precision == 0.0


# --------------------------------------------------------------------------- which trials are retrained

# (loss, throughput). Front by hand: #0, #1, #3, #5. Of the rest, #4 dominates #2; #7 and #4 do not
# dominate each other: layer 2 is {#7, #4}, layer 3 is {#2}. #6 failed, #8 is infeasible, #9 reused #1.
ROWS = [(0.30, 900.0), (0.20, 500.0), (0.25, 400.0), (0.10, 100.0), (0.22, 450.0), (0.15, 300.0), None,
        (0.12, 80.0), (0.05, 2000.0), (0.20, 500.0)]


def _table():
    rows = []
    for number, spec in enumerate(ROWS):
        loss, speed = spec or (None, None)
        rows.append({"number": number, "state": "FAIL" if spec is None else "COMPLETE", "val_loss": loss,
                     "train_throughput": speed, "feasible": number != 8, "reused_from": 1 if number == 9 else None})
    return pd.DataFrame(rows)


def test_pareto_layers_sort_the_dominated():
    values = np.array([r for r in ROWS[:6] if r] + [ROWS[7]])  # trials 0..5 and 7
    assert pareto_layers(values, ["minimize", "maximize"]).tolist() == [1, 1, 3, 1, 2, 1, 2]
    assert pareto_layers(np.array([[np.nan, 1.0]]), ["minimize", "maximize"]).tolist() == [0]


@pytest.mark.parametrize("dominated,picked", [(0, []), (1, [4]), (2, [7, 2]), (3, [7, 4, 2]), (10, [7, 4, 2])])
def test_the_front_and_a_spread_of_the_dominated_are_picked(dominated, picked):
    picks = select_trials(_table(), ["val_loss", "train_throughput"], ["minimize", "maximize"], dominated)
    assert [(p.number, p.role) for p in picks] == [(3, FRONT), (5, FRONT), (1, FRONT), (0, FRONT)] + \
        [(n, DOMINATED) for n in picked]


def test_spread_positions_keep_both_ends():
    assert spread_positions(10, 4) == [0, 3, 6, 9]
    assert spread_positions(4, 3) == [0, 2, 3]  # 1.5 rounds up
    assert spread_positions(5, 1) == [2] and spread_positions(3, 5) == [0, 1, 2] and spread_positions(0, 2) == []


class _Trial:
    def __init__(self, steps, seconds=None):
        self.user_attrs = {"config": {"levels": []}, "train": {"steps": steps, "seed": 4, "seconds": seconds}}


def test_budgets_scale_steps_and_seconds_and_add_a_seed():
    picks = select_trials(_table(), ["val_loss", "train_throughput"], ["minimize", "maximize"], 1)
    trials = {p.number: _Trial(60, seconds=30.0 if p.number == 3 else None) for p in picks}
    plan = retrain_plan(trials, picks, factor=10, steps=None, seeds=2)
    assert [(r.source_trial, r.budget) for r in plan] == [(3, "long"), (5, "long"), (1, "long"), (0, "long"), (4, "long"),
                                                          (3, "seed"), (5, "seed"), (1, "seed"), (0, "seed"), (4, "seed")]
    assert plan[0].train["steps"] == 600 and plan[0].train["seconds"] == 300.0 and plan[1].train["seconds"] is None
    assert plan[5].train == {"steps": 60, "seed": 5, "seconds": 30.0}
    assert plan[0].label == "retrains #3, front, 600 steps" and plan[5].label == "retrains #3, front, seed 5"


def test_a_budget_that_is_not_longer_names_the_option_and_the_trial():
    picks = select_trials(_table(), ["val_loss", "train_throughput"], ["minimize", "maximize"], 0)
    trials = {p.number: _Trial(8) for p in picks}
    with pytest.raises(ConfigErrors) as info:
        retrain_plan(trials, picks, factor=None, steps=8, seeds=1)
    assert info.value.lines() == ["--steps: 8 steps is not more than the 8 steps trial #3 trained; give a longer "
                                  "budget (and 3 more trials)"]
    with pytest.raises(ConfigErrors) as info:
        retrain_plan(trials, picks, factor=1.05, steps=None, seeds=1)
    assert info.value.lines()[0].startswith("--factor: 1.05 × 8 = 8 steps is not more than the 8 steps trial #3")


# --------------------------------------------------------------------------- the re-measurement's order


def test_rounds_interleave_the_members_each_round_starting_one_later():
    assert interleave([3, 5, 7], 3) == [(0, 3), (0, 5), (0, 7), (1, 5), (1, 7), (1, 3), (2, 7), (2, 3), (2, 5)]
    assert interleave([], 4) == []


def test_measure_rounds_records_every_value_in_the_order_measured():
    clock = iter(range(100))
    measured = []
    values = measure_rounds(["ref", 3], 2, lambda key: {"train_throughput": float(next(clock)), "latency_ms": 1.0},
                            on_measured=lambda r, key: measured.append((r, key)))
    # A reference model is one more key: each round holds one value of it beside the members'.
    assert measured == [(0, "ref"), (0, 3), (1, 3), (1, "ref")]
    assert [v for v in values if v[2] == "train_throughput"] == [[0, "ref", "train_throughput", 0.0],
                                                                 [0, 3, "train_throughput", 1.0],
                                                                 [1, 3, "train_throughput", 2.0],
                                                                 [1, "ref", "train_throughput", 3.0]]
    assert len(values) == 8


def test_the_verify_renderings_and_numbers_import_no_torch():
    import subprocess
    import sys

    code = ("import sys\nimport archsearch.verify.analysis, archsearch.verify.report, archsearch.verify.remeasure\n"
            "import archsearch.verify.selection, archsearch.verify.stats\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_what_verify_re_measures_is_what_measure_times():
    from archsearch.metrics import MEASURED_METRICS, METRICS, TIMED_METRICS

    # Timed by archsearch.measure itself, or (the normalized speed) from its ratio to the reference.
    assert "train_throughput" in TIMED_METRICS
    assert set(TIMED_METRICS) <= set(MEASURED_METRICS) | {"train_throughput_normalized"}
    assert all(METRICS[m].objective and METRICS[m].unit in ("img/s", "ms", "×") for m in TIMED_METRICS)


def test_the_normalized_speed_is_remeasured_against_the_reference():
    """Each re-measurement's ratio × the median reference speed over all of them."""
    from archsearch.verify.remeasure import _normalized

    values = [[0, 3, "train_speed_vs_ref", 2.0], [0, 3, "ref_throughput", 100.0],
              [0, 5, "train_speed_vs_ref", 0.5], [0, 5, "ref_throughput", 300.0],
              [1, 5, "train_speed_vs_ref", 0.6], [1, 5, "ref_throughput", 200.0]]
    out = _normalized(values, ["train_throughput_normalized"])
    assert out == [[0, 3, "train_throughput_normalized", 400.0], [0, 5, "train_throughput_normalized", 100.0],
                   [1, 5, "train_throughput_normalized", pytest.approx(120.0)]]
    assert _normalized(values, ["train_speed_vs_ref"]) == [row for row in values if row[2] == "train_speed_vs_ref"]


def test_remeasure_times_a_member_against_the_reference(tmp_path):
    from archsearch.schema.space import space_from_dict
    from archsearch.verify.remeasure import remeasure_front

    from test_study import TINY

    space = space_from_dict(TINY)
    config = {**TINY["architecture"], "image_size": 8, "in_channels": 1,
              "levels": [{"width": 8, "blocks": 1}, {"width": 8, "blocks": 1}], "block": {"norm": {"groups": 4}}}
    record = remeasure_front({7: (config, TINY["train"])}, space, "cpu", 3, ["train_throughput_normalized"])
    values = [v for v in record["values"] if v[2] == "train_throughput_normalized"]
    assert [(r, k) for r, k, _, _ in values] == [(0, 7), (1, 7), (2, 7)] and all(v > 0 for *_, v in values)
