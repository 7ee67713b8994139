"""Pareto-aware early stopping (issue 11): the MO-ASHA rule of archsearch.search.stopping, and
`study.stopping` in a space file.

Orders are written out by hand (fronts, crowding distances over normalized objectives) so the
rule is pinned, not just re-derived; random vectors then check the properties any correct
ordering has.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.errors import ConfigErrors
from archsearch.metrics import METRICS, OBJECTIVE_METRICS
from archsearch.schema.space import load_space, space_from_dict
from archsearch.schema.study import AshaStopping, NoStopping, StudyConfig
from archsearch.search.stopping import rank, rung_steps, should_stop, total_violation

MIN2 = ["minimize", "minimize"]


def position_of(candidate, rung, directions=MIN2, eta=3, min_trials=1, **options):
    return should_stop(candidate, rung, directions, eta, min_trials, **options)


# --- rungs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("min_steps, eta, total, steps", [
    (20, 3, 300, [20, 60, 180]),
    (20, 3, 180, [20, 60]),        # strictly below the budget: a rung at the last step decides nothing
    (20, 3, 181, [20, 60, 180]),
    (20, 3, 21, [20]),
    (20, 3, 20, []),
    (50, 3, 10, []),
    (1, 2, 9, [1, 2, 4, 8]),
    (7, 100, 10**9, [7, 700, 70_000, 7_000_000, 700_000_000]),
])
def test_rung_steps(min_steps, eta, total, steps):
    assert rung_steps(min_steps, eta, total) == steps


@pytest.mark.parametrize("min_steps, eta", [(0, 3), (20, 1), (20, 0)])
def test_rung_steps_refuses_what_would_loop_or_mean_nothing(min_steps, eta):
    with pytest.raises(ValueError):
        rung_steps(min_steps, eta, 300)


# --- the order: fronts, then crowding --------------------------------------------------------

# Both minimized. Fronts: {A, B, C}, {D}, {F}, {E} (B dominates D, D dominates F, all dominate E).
# Normalized over the six (x / 4, (y - 1) / 3): A (0, 1), B (.25, .33), C (.75, 0); A and C are
# extremes (infinite distance; A first, it came first), B's distance is .75 + 1.
HAND = {"A": (0, 4), "B": (1, 2), "C": (3, 1), "D": (2, 3), "E": (4, 4), "F": (3, 3)}


def test_fronts_then_crowding_by_hand():
    names = list(HAND)
    assert [names[i] for i in rank(list(HAND.values()), MIN2)] == ["A", "C", "B", "D", "F", "E"]


def test_crowding_orders_a_front_and_decides_at_the_boundary():
    # One front of four and a point dominated by all. Normalized over the five (both / 11): the
    # extremes first, then (2, 4.9) (distance (10 - 1)/11 + 5/11) before (1, 5) (distance
    # 2/11 + 5.1/11), the crowded one.
    front = [(0, 10), (1, 5), (2, 4.9), (10, 0)]
    assert rank([*front, (11, 11)], MIN2) == [0, 3, 2, 1, 4]
    # eta 2 over five keeps three: the less crowded middle point goes on, the crowded one stops.
    spacious = should_stop((2, 4.9), [(0, 10), (1, 5), (10, 0), (11, 11)], MIN2, eta=2, min_trials_at_rung=1)
    crowded = should_stop((1, 5), [(0, 10), (2, 4.9), (10, 0), (11, 11)], MIN2, eta=2, min_trials_at_rung=1)
    assert (spacious.stop, spacious.position, spacious.kept) == (False, 2, 3)
    assert (crowded.stop, crowded.position, crowded.kept) == (True, 3, 3)


def test_the_syne_tune_pitfall_a_dominated_newcomer_is_stopped():
    rung, newcomer = [(5, 5), (0, 0), (1, 1)], (4, 4)
    decision = should_stop(newcomer, rung, MIN2, eta=3, min_trials_at_rung=3, rung=0, step=20)
    assert (decision.stop, decision.position, decision.n, decision.kept) == (True, 2, 4, 2)
    assert decision.reason == "stopped at rung 0 (step 20): position 3 of 4 at this rung (keeps the top 2)"
    # The ordering is [1, 2, 3, 0]: reading it as a per-point rank gives the newcomer (index 3)
    # rank 0 and keeps it. The rank is the inverse permutation.
    order = rank([*rung, newcomer], MIN2)
    assert order == [1, 2, 3, 0] and order[3] == 0 and order.index(3) == 2


def test_maximized_objectives_are_turned_around():
    # val_loss down, throughput up: (0.3, 50) is dominated by (0.1, 100).
    directions = ["minimize", "maximize"]
    assert rank([(0.1, 100), (0.2, 500), (0.3, 50)], directions) == [0, 1, 2]
    assert rank([(0.1, 100), (0.2, 500), (0.3, 50)], MIN2) == [0, 2, 1]  # as minimized, 50 would be best
    assert should_stop((0.3, 50), [(0.1, 100), (0.2, 500)], directions, 3, 3).stop
    # The hand-computed study with every objective negated and maximized orders the same.
    negated = [(-x, -y) for x, y in HAND.values()]
    assert rank(negated, ["maximize", "maximize"]) == rank(list(HAND.values()), MIN2)


@pytest.mark.parametrize("seed", range(20))
def test_units_do_not_matter(seed):
    """Normalization: scaling an objective (seconds to milliseconds) changes no order or decision."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 4))
    vectors = rng.random((int(rng.integers(4, 30)), m)).round(2)  # rounded: ties and shared values too
    directions = list(rng.choice(["minimize", "maximize"], m))
    scaled = vectors.copy()
    scaled[:, int(rng.integers(m))] *= 1000
    assert rank(vectors.tolist(), directions) == rank(scaled.tolist(), directions)
    for eta in (2, 3, 4):
        assert should_stop(vectors[-1], vectors[:-1], directions, eta, 1) == \
               should_stop(scaled[-1], scaled[:-1], directions, eta, 1)


def test_normalization_is_what_makes_units_not_matter():
    # Which middle point of a front is the less crowded depends on the spread of each objective.
    # Normalized, (.8, .6) has distance .7 + .9 and (.3, .9) has .8 + .4. With x in thousandths
    # and no normalization, x's gaps would swamp y's: 700.9 against 800.4, the other way round.
    front = [(0, 1), (0.3, 0.9), (0.8, 0.6), (1, 0)]
    assert rank(front, MIN2) == [0, 3, 2, 1]
    assert rank([(x * 1000, y) for x, y in front], MIN2) == [0, 3, 2, 1]


@pytest.mark.parametrize("n, eta, kept", [(3, 3, 1), (4, 3, 2), (9, 3, 3), (10, 3, 4), (2, 2, 1), (5, 2, 3), (7, 100, 1)])
def test_the_top_ceil_n_over_eta_go_on(n, eta, kept):
    # A chain (each vector dominates the next): position p is the p-th best. p / n = 1 / eta stops.
    chain = [(float(i), float(i)) for i in range(n)]
    for p in range(n):
        decision = should_stop(chain[p], chain[:p] + chain[p + 1:], MIN2, eta, 1)
        assert (decision.position, decision.kept, decision.stop) == (p, kept, p >= kept), p


# --- min_trials_at_rung, constraints, ties -----------------------------------------------------

def test_min_trials_at_rung():
    rung = [(0, 0), (1, 1)]
    early = should_stop((9, 9), rung, MIN2, eta=3, min_trials_at_rung=4, rung=1, step=60)
    assert not early.stop and early.position == 2 and early.n == 3
    assert early.reason == "kept at rung 1 (step 60): 3 of the 4 trials needed before this rung stops any"
    assert should_stop((9, 9), rung, MIN2, eta=3, min_trials_at_rung=3).stop  # n = 3 reaches it
    # With one trial needed, the second trial to arrive is stopped if it is worse than the first.
    assert should_stop((9, 9), [(0, 0)], MIN2, eta=3, min_trials_at_rung=1).stop
    assert not should_stop((9, 9), [], MIN2, eta=3, min_trials_at_rung=1).stop  # alone, it is first


def test_an_infeasible_trial_is_not_kept_for_its_loss():
    directions = ["minimize", "maximize"]
    rung = [(0.5, 100), (0.6, 200), (0.7, 300)]
    best_but_too_big = should_stop((0.1, 1000), rung, directions, eta=3, min_trials_at_rung=3,
                                   candidate_violation=2.5e6, rung=0, step=20)
    assert best_but_too_big.stop and best_but_too_big.position == 3 and not best_but_too_big.feasible
    assert best_but_too_big.reason.endswith("(keeps the top 2); it violates its constraints by 2.5e+06")
    # The other way round: a poor feasible trial goes ahead of infeasible ones, which rank by
    # their total violation, smallest first.
    poor = should_stop((0.9, 10), rung, directions, eta=3, min_trials_at_rung=3, rung_violations=[3.0, 1.0, 2.0])
    assert (poor.stop, poor.position) == (False, 0)
    assert rank([*rung, (0.9, 10)], directions, [3.0, 1.0, 2.0, 0.0]) == [3, 1, 2, 0]
    assert rank([(0, 0), (1, 1), (2, 2)], MIN2, [0.5, 0.5, 0.0]) == [2, 0, 1]  # equal violations: arrival


def test_total_violation_counts_like_optuna():
    assert total_violation([-1.0, 0.0]) == 0.0
    assert total_violation([-1.0, 0.5, 2.0]) == 2.5
    assert total_violation([math.nan]) == math.inf
    assert total_violation([]) == 0.0


def test_ties_go_to_the_earlier_trial():
    # An identical newcomer ranks right after its twin, in a front of extremes or in its middle.
    assert should_stop((1, 1), [(1, 1)], MIN2, eta=2, min_trials_at_rung=1).position == 1
    assert rank([(0, 2), (1, 1), (2, 0), (1, 1)], MIN2) == [0, 2, 1, 3]
    assert rank([(1, 1), (0, 2), (1, 1), (2, 0), (1, 1)], MIN2) == [1, 3, 0, 2, 4]
    # One objective: plain ASHA, equal losses by arrival.
    assert rank([(0.3,), (0.1,), (0.3,), (0.2,)], ["minimize"]) == [1, 3, 0, 2]


def test_failed_measurements_count_as_the_worst():
    # NaN or an infinity is the worst value of its objective, whichever the direction.
    assert rank([(math.nan, 5), (1, 1), (2, 2)], MIN2) == [1, 2, 0]
    assert rank([(1, -math.inf), (1, 1)], ["minimize", "maximize"]) == [1, 0]
    assert rank([(1, math.inf), (1, 1)], ["minimize", "maximize"]) == [1, 0]


def test_the_decision_record():
    decision = should_stop((4, 4), [(5, 5), (0, 0), (1, 1), (3, 3), (2, 2), (6, 6), (7, 7), (8, 8)], MIN2, 3, 3,
                           rung=2, step=180)
    attrs = decision.as_attrs()
    assert json.loads(json.dumps(attrs)) == attrs
    assert attrs == {"stop": True, "position": 4, "n": 9, "kept": 3, "rung": 2, "step": 180, "feasible": True,
                     "reason": "stopped at rung 2 (step 180): position 5 of 9 at this rung (keeps the top 3)"}
    kept = should_stop((-1, -1), [(5, 5), (0, 0)], MIN2, 3, 3, step=180)
    assert kept.reason == "kept at step 180: position 1 of 3 at this rung (keeps the top 1)" and not kept.stop
    assert position_of((-1, -1), [(5, 5), (0, 0)]).reason.startswith("kept at this rung: position 1 of 3")


@pytest.mark.parametrize("call, message", [
    (lambda: should_stop((1, 1), [(1,)], MIN2, 3, 3), "a vector of 1 values for 2 objectives"),
    (lambda: should_stop((1, 1), [], ["minimize", "up"], 3, 3), "unknown direction 'up'"),
    (lambda: should_stop((1, 1), [], MIN2, 1, 3), "eta must be at least 2"),
    (lambda: should_stop((1, 1), [], MIN2, 3, 0), "min_trials_at_rung must be at least 1"),
    (lambda: should_stop((1, 1), [(2, 2)], MIN2, 3, 3, rung_violations=[]), "0 rung violations for 1"),
    (lambda: rank([(1, 1)], [], None), "no objectives"),
])
def test_bad_arguments_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_rule_loads_neither_torch_nor_optuna():
    code = "import sys, archsearch.search.stopping; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- properties over random rungs ----------------------------------------------------------------

def _dominates(a, b, signs) -> bool:
    a, b = np.asarray(a) * signs, np.asarray(b) * signs
    return bool(np.all(a <= b) and np.any(a < b))


@pytest.mark.parametrize("seed", range(40))
def test_dominating_all_goes_on_and_dominated_by_all_stops(seed):
    rng = np.random.default_rng(seed)
    m, n_others = int(rng.integers(1, 5)), int(rng.integers(0, 40))
    eta, min_trials = int(rng.integers(2, 6)), int(rng.integers(1, 8))
    directions = list(rng.choice(["minimize", "maximize"], m))
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    others = rng.normal(size=(n_others, m)).round(1)  # rounded: duplicates and ties happen
    low, high = (others.min(axis=0), others.max(axis=0)) if n_others else (np.zeros(m), np.zeros(m))
    best = np.where(signs > 0, low - 1, high + 1)    # better than every other in every objective
    worst = np.where(signs > 0, high + 1, low - 1)
    n = n_others + 1
    winner = should_stop(best, others, directions, eta, min_trials)
    assert not winner.stop and winner.position == 0
    loser = should_stop(worst, others, directions, eta, min_trials)
    assert loser.position == n - 1
    assert loser.stop == (n >= max(min_trials, 2))  # last of n >= 2 is past the top ceil(n / eta)
    if n >= max(min_trials, eta):
        assert loser.stop


@pytest.mark.parametrize("seed", range(10))
def test_no_vector_ranks_after_one_it_dominates(seed):
    rng = np.random.default_rng(seed)
    n, m = (1500, 3) if seed == 0 else (int(rng.integers(1, 60)), int(rng.integers(1, 4)))
    vectors = rng.integers(0, 6, size=(n, m)).astype(float)  # few values: many ties
    directions = list(rng.choice(["minimize", "maximize"], m))
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    order = rank(vectors.tolist(), directions)
    assert sorted(order) == list(range(n))
    placed = np.asarray(vectors)[order] * signs
    # dominated[i, j]: the vector placed at i dominates the one placed at j; never with j < i.
    no_worse = np.all(placed[:, None, :] <= placed[None, :, :], axis=-1)
    better = np.any(placed[:, None, :] < placed[None, :, :], axis=-1)
    assert not np.any(np.tril(no_worse & better, k=-1))
    assert rank(vectors.tolist(), directions) == order  # deterministic
    if n <= 60:
        for i, j in zip(order, order[1:]):
            assert not _dominates(vectors[j], vectors[i], signs)


# --- study.stopping in a space file ----------------------------------------------------------------

ARCH = {"levels": [{"width": 8}, {"width": 16}], "block": {"norm": {"groups": 4}}, "embedding": {"dim": 8}}


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        space_from_dict({"architecture": ARCH, **data})
    return info.value.lines()


def test_stopping_defaults_to_none_and_asha_to_the_issue_values():
    assert StudyConfig().stopping == NoStopping()
    assert space_from_dict({"architecture": ARCH}).study.stopping.kind == "none"
    asha = space_from_dict({"architecture": ARCH, "study": {"stopping": {"kind": "asha"}}}).study.stopping
    assert asha == AshaStopping() and (asha.min_steps, asha.eta, asha.min_trials_at_rung) == (20, 3, 3)


def test_set_turns_it_on(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"architecture": ARCH}))
    space = load_space(path, {"study.stopping.kind": "asha", "study.stopping.eta": 2})
    assert space.study.stopping == AshaStopping(eta=2)
    from archsearch.cli import app

    result = CliRunner().invoke(app, ["validate", str(path), "--set", "study.stopping.kind=asha"])
    assert result.exit_code == 0, result.output


def test_one_objective_is_plain_asha():
    space = space_from_dict({"architecture": ARCH, "objectives": [{"metric": "val_loss"}],
                             "study": {"stopping": {"kind": "asha"}}})
    assert space.study.stopping.kind == "asha"


@pytest.mark.parametrize("data, line", [
    ({"study": {"stopping": {"min_steps": 5}}},
     "study.stopping: min_steps is an option of kind: asha; write kind: asha"),
    ({"study": {"stopping": {"kind": "hyperband"}}}, "study.stopping.kind: unknown kind; use one of 'none', 'asha'"),
    ({"study": {"stopping": {"kind": "asha", "eta": 1}}}, "study.stopping.eta: Input should be greater than or equal to 2"),
    ({"study": {"stopping": {"kind": "asha", "min_trials_at_rung": 0}}}, "study.stopping.min_trials_at_rung: Input should"),
    ({"study": {"stopping": {"kind": "asha", "min_steps": 300}}},
     "study.stopping.min_steps: 300 is not below train.steps (300): a trial would have no rung to stop at"),
    ({"study": {"stopping": {"kind": "asha", "min_steps": 60}}, "train": {"steps": {"int": [50, 500]}}},
     "study.stopping.min_steps: 60 is not below the shortest train.steps (50)"),
    ({"study": {"stopping": {"kind": "asha", "min_steps": 60}}, "train": {"steps": {"choice": [400, 40]}}},
     "study.stopping.min_steps: 60 is not below the shortest train.steps (40)"),
    ({"study": {"stopping": {"kind": "asha"}}, "objectives": [{"metric": "params"}, {"metric": "flops"}]},
     "study.stopping: asha compares trials by their validation loss at rungs, but val_loss is not an objective"),
    ({"study": {"stopping": {"kind": "asha"}, "pruner": {"kind": "median"}}, "objectives": [{"metric": "val_loss"}]},
     "study.stopping: asha and study.pruner (median) would both stop trials; keep one"),
])
def test_stopping_problems_name_their_field(data, line):
    lines = errors_of(data)
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_every_stopping_problem_at_once():
    lines = errors_of({"study": {"stopping": {"kind": "asha", "min_steps": 500}}, "objectives": [{"metric": "params"}]})
    assert [line.split(":")[0] for line in lines] == ["study.stopping", "study.stopping.min_steps"], lines


def test_a_searched_budget_above_min_steps_is_fine():
    space = space_from_dict({"architecture": ARCH, "study": {"stopping": {"kind": "asha", "min_steps": 20}},
                             "train": {"steps": {"choice": [100, 300]}}})
    assert space.study.stopping.min_steps == 20


@pytest.mark.parametrize("metric", [m for m in OBJECTIVE_METRICS if m != "val_loss"])
def test_a_rung_compares_only_what_it_knows(metric):
    """Objectives and constraints must be known at a rung: val_loss there, the cost metrics
    measured before training; the others (duration_s, train_loss) only once training ends."""
    data = {"study": {"stopping": {"kind": "asha"}}, "objectives": [{"metric": "val_loss"}, {"metric": metric}],
            "constraints": [f"{metric} <= 1e9"]}
    if METRICS[metric].before_training or METRICS[metric].quality:  # quality: the rung's val_loss stands in
        assert space_from_dict({"architecture": ARCH, **data}).objectives[1].metric == metric
        return
    lines = errors_of(data)
    assert [line.split(": ", 1)[0] for line in lines] == ["objectives.1.metric", "constraints.0"], lines
    assert lines[0].startswith(f"objectives.1.metric: {metric} is not known at a rung (only once training ends)")
    assert space_from_dict({"architecture": ARCH, **data, "study": {}}).objectives[1].metric == metric  # fine without


def test_what_a_rung_knows_is_what_run_trial_measures_before_training():
    # run_trial copies the `measured` metrics from the timing phase and counts params first; the
    # normalized speed it computes from the measured ratio at once (tests/test_trial.py checks a rung sees it).
    assert {m for m in OBJECTIVE_METRICS if METRICS[m].before_training} == \
        {m for m in OBJECTIVE_METRICS if METRICS[m].measured} | {"params", "train_throughput_normalized"}
