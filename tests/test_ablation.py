"""Ablation files and ablation statistics: loading errors with paths, paired t-intervals checked
against hand-computed values, verdicts, failed seeds, and the report renderings."""

import math
from pathlib import Path

import pandas as pd
import pytest

from archsearch.ablation.report import (comparison_frame, comparison_markdown, comparison_table, forest_data, forest_plot,
                                       summary_line)
from archsearch.ablation.stats import (NO_DIFFERENCE, compare_variants, loss_verdict, paired_interval, ratio_interval,
                                      throughput_verdict, verdict)
from archsearch.errors import ConfigErrors
from archsearch.metrics import METRICS, QUALITY_METRICS
from archsearch.schema.ablation import ablation_from_dict, compared_metrics, load_ablation
from archsearch.schema.quality import QualityConfig

SHIPPED = Path(__file__).parent.parent / "search_spaces" / "ablations"

# --------------------------------------------------------------------------- statistics


def test_interval_of_three_seeds_matches_the_hand_computation():
    # d = [1, 2, 3]: mean 2, sd 1, t(0.975, 2) = 4.302653, half-width 4.302653 / sqrt(3) = 2.484138
    iv = paired_interval([1.0, 2.0, 3.0])
    assert iv.n == 3
    assert iv.mean == pytest.approx(2.0)
    assert iv.low == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert iv.high == pytest.approx(2.0 + 2.484138, abs=1e-6)


def test_interval_of_four_seeds_matches_the_hand_computation():
    # d = [0.5, 0.7, 0.6, 0.9]: mean 0.675, sd sqrt(0.0875 / 3) = 0.1707825, t(0.975, 3) = 3.182446,
    # half-width 3.182446 * 0.1707825 / 2 = 0.2717532
    iv = paired_interval([0.5, 0.7, 0.6, 0.9])
    assert iv.mean == pytest.approx(0.675)
    assert (iv.low, iv.high) == pytest.approx((0.675 - 0.2717532, 0.675 + 0.2717532), abs=1e-6)
    assert iv.format(digits=3) == "+0.675% [+0.403, +0.947]"


def test_one_seed_has_no_interval_and_no_verdict():
    iv = paired_interval([-4.0])
    assert (iv.mean, iv.low, iv.high, iv.n) == (-4.0, None, None, 1)
    assert iv.format() == "-4.0% [n/a]"
    assert loss_verdict(iv) == "n/a (one seed)"
    assert paired_interval([]).n == 0 and loss_verdict(paired_interval([])) == "n/a"


@pytest.mark.parametrize("deltas,loss,speed", [
    ([-3.0, -2.0, -4.0], "better", "slower"),      # the whole interval below zero
    ([3.0, 2.0, 4.0], "worse", "faster"),          # the whole interval above zero
    ([-1.0, 2.0, 0.5], NO_DIFFERENCE, NO_DIFFERENCE),
    ([1.0, 1.0, 1.0], "worse", "faster"),          # no spread: a zero-width interval at +1
    ([0.0, 0.0], NO_DIFFERENCE, NO_DIFFERENCE),
])
def test_verdicts_need_the_whole_interval_on_one_side(deltas, loss, speed):
    iv = paired_interval(deltas)
    assert loss_verdict(iv) == loss
    assert throughput_verdict(iv) == speed


def test_a_ratio_interval_is_never_below_minus_100_percent():
    # ratios [0.05, 0.9, 0.5]: in percent [-95, -10, -50], whose arithmetic t-interval starts at -157%
    iv = ratio_interval([0.05, 0.9, 0.5])
    assert iv.mean == pytest.approx(100 * ((0.05 * 0.9 * 0.5) ** (1 / 3) - 1))  # the geometric mean ratio
    assert (iv.low, iv.high) == pytest.approx((-99.365160, 1155.424240), abs=1e-4)
    assert -100 < iv.low < iv.mean < iv.high
    assert ratio_interval([2.0, 0.5]).mean == pytest.approx(0.0)  # doubling and halving cancel


def _runs(rows):
    return pd.DataFrame(rows, columns=["variant", "seed", "state", "val_loss", "train_throughput", "params", "flops", "fail_reason"])


def _ok(variant, seed, loss, speed, params=100, flops=1000):
    return (variant, seed, "COMPLETE", loss, speed, params, flops, None)


def test_compare_variants_pairs_by_seed_in_percent_of_the_base():
    runs = _runs([
        _ok("base", 0, 1.0, 100.0), _ok("base", 1, 2.0, 200.0), _ok("base", 2, 4.0, 400.0),
        # +10%, +5%, +5% loss; -10% throughput on every seed; 20% fewer parameters
        _ok("wide", 2, 4.2, 360.0, 80, 500), _ok("wide", 0, 1.1, 90.0, 80, 500), _ok("wide", 1, 2.1, 180.0, 80, 500),
    ])
    base, wide = compare_variants(runs, {"base": "ref", "wide": "w"}, seeds=3)
    assert base.loss_verdict == "reference" and base.loss.mean == 0
    # loss ratios [1.1, 1.05, 1.05], on the log scale: mean m = 0.0642968, sd 0.0268583, half-width
    # h = 4.302653 * 0.0268583 / sqrt(3) = 0.0667198; change exp(m) - 1 = +6.6409%, [exp(m ∓ h) - 1]
    assert wide.loss.mean == pytest.approx(6.640890, abs=1e-5)
    assert (wide.loss.low, wide.loss.high) == pytest.approx((-0.242005, 13.998677), abs=1e-5)
    assert wide.loss_verdict == NO_DIFFERENCE
    # absolute deltas [0.1, 0.1, 0.2]: mean 0.13333, sd 0.057735, half-width 0.1434218
    assert (wide.loss_abs.low, wide.loss_abs.high) == pytest.approx((0.1333333 - 0.1434218, 0.1333333 + 0.1434218), abs=1e-6)
    assert wide.throughput.mean == pytest.approx(-10.0) and wide.throughput_verdict == "slower"
    assert wide.params_change(base) == pytest.approx(-20.0) and wide.flops_change(base) == pytest.approx(-50.0)
    assert wide.status == "3/3"
    assert summary_line(wide, base) == ("wide: val loss +6.6% [-0.2, +14.0] (no detectable difference), "
                                        "throughput -10.0% [-10.0, -10.0] (slower); params -20.0%, FLOPs -50.0%")


def test_failed_seeds_are_reported_and_left_out_of_the_interval():
    runs = _runs([
        _ok("base", 0, 1.0, 10.0), _ok("base", 1, 1.0, 10.0), _ok("base", 2, 1.0, 10.0),
        _ok("shaky", 0, 0.9, 10.0), _ok("shaky", 1, 0.8, 10.0),
        ("shaky", 2, "FAIL", None, 10.0, 100, 1000, "diverged: loss is nan at step 40"),
        ("huge", 0, "FAIL", None, None, 100, 1000, "oom: out of memory while measuring"),
        ("huge", 1, "FAIL", None, None, 100, 1000, "oom: out of memory while measuring"),
    ])
    _, shaky, huge, missing = compare_variants(runs, {"base": "", "shaky": "", "huge": "", "missing": ""}, seeds=3)
    assert shaky.loss.n == 2 and shaky.loss.mean == pytest.approx(100 * (0.72 ** 0.5 - 1))  # ratios 0.9, 0.8
    assert shaky.status == "2/3 (seed 2 diverged)"
    assert huge.status == "failed: oom" and huge.loss.n == 0 and huge.loss_verdict == "n/a"
    assert summary_line(huge, _) == "huge: failed: oom"
    assert missing.status == "0/3" and missing.loss_verdict == "n/a"


def test_a_seed_the_base_failed_on_pairs_with_nothing():
    runs = _runs([
        _ok("base", 0, 1.0, 10.0), ("base", 1, "FAIL", None, None, 100, 1000, "diverged: x"),
        _ok("v", 0, 2.0, 10.0), _ok("v", 1, 3.0, 10.0),
    ])
    _, v = compare_variants(runs, {"base": "", "v": ""}, seeds=2)
    assert v.loss.n == 1 and v.loss.mean == pytest.approx(100.0) and v.loss_verdict == "n/a (one seed)"


def test_report_renderings_agree(tmp_path):
    runs = _runs([
        _ok("base", 0, 1.0, 100.0), _ok("base", 1, 1.0, 100.0), _ok("base", 2, 1.0, 100.0),
        _ok("better", 0, 0.9, 120.0), _ok("better", 1, 0.91, 121.0), _ok("better", 2, 0.92, 119.0),
        _ok("one", 0, 1.2, 80.0),
        ("broken", 0, "FAIL", None, None, 100, 1000, "diverged: nan"),
    ])
    comparisons = compare_variants(runs, {"base": "ref", "better": "b", "one": "o", "broken": "x"}, seeds=3)
    frame = comparison_frame(comparisons)
    assert list(frame["variant"]) == ["base", "better", "one", "broken"]
    row = frame.set_index("variant").loc["better"]
    assert row["loss_verdict"] == "better" and row["throughput_verdict"] == "faster"
    assert row["delta_val_loss_pct"] == pytest.approx(100 * ((0.9 * 0.91 * 0.92) ** (1 / 3) - 1))
    assert math.isnan(frame.set_index("variant").loc["one", "delta_val_loss_pct_low"])
    md = comparison_markdown(comparisons, "demo", seeds=3)
    better = next(line for line in md.splitlines() if line.startswith("| better |"))
    assert better.startswith("| better | b | -9.0% [") and "| better | +20.0% [" in better and "| faster |" in better
    assert "| broken | x | n/a | n/a | n/a | n/a |" in md and "failed: diverged" in md
    png = forest_plot(comparisons, tmp_path / "forest.png", "demo", seeds=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


# --------------------------------------------------------------------------- sample quality


@pytest.mark.parametrize("metric", [m for m, info in METRICS.items() if info.direction is not None])
def test_every_metric_s_verdict_follows_its_registry_direction(metric):
    up, down = paired_interval([1.0, 2.0, 1.5]), paired_interval([-1.0, -2.0, -1.5])
    good, bad = ("faster", "slower") if METRICS[metric].timed else ("better", "worse")
    rises_well = METRICS[metric].direction == "maximize"
    assert (verdict(metric, up), verdict(metric, down)) == ((good, bad) if rises_well else (bad, good))
    assert verdict(metric, paired_interval([-1.0, 1.0, 0.5])) == NO_DIFFERENCE


def _quality_runs():
    rows = []
    # fd: base [10, 20, 30], variant 2, 2.5 and 1.5 lower; kid negative on one seed; precision +0.1, +0.2, +0.15
    for seed, (fd, kid, prec) in enumerate([(10.0, 0.5, 0.5), (20.0, -0.1, 0.4), (30.0, 0.2, 0.6)]):
        rows.append(("base", seed, "COMPLETE", 1.0, 100.0, fd, kid, prec, 0.5, 100, 1000, None))
    for seed, (fd, kid, prec) in enumerate([(8.0, 0.6, 0.6), (17.5, 0.2, 0.6), (28.5, 0.3, 0.75)]):
        rows.append(("v", seed, "COMPLETE", 1.0, 100.0, fd, kid, prec, 0.5, 100, 1000, None))
    return pd.DataFrame(rows, columns=["variant", "seed", "state", "val_loss", "train_throughput", *QUALITY_METRICS,
                                       "params", "flops", "fail_reason"])


def test_quality_changes_get_the_paired_t_interval_in_their_own_units():
    base, v = compare_variants(_quality_runs(), {"base": "", "v": ""}, seeds=3)
    assert list(v.changes) == ["val_loss", "train_throughput", *QUALITY_METRICS]  # measured: compared, registry order
    fd = v.changes["fd"]
    # Δ = [-2, -2.5, -1.5]: mean -2, sd 0.5, half-width 4.302653 * 0.5 / sqrt(3) = 1.2420693
    assert (fd.absolute.mean, fd.absolute.low, fd.absolute.high) == pytest.approx((-2.0, -3.2420693, -0.7579307), abs=1e-6)
    assert fd.shown is fd.absolute and fd.verdict == "better"  # lower FD is better
    assert fd.format() == "-2.00 [-3.24, -0.76]"
    assert fd.relative.n == 3  # a positive quantity: its % change is kept too (ablation.csv)
    kid = v.changes["kid"]
    assert kid.relative is None and kid.absolute.mean == pytest.approx(0.1666667)  # a negative KID: no ratio
    # precision Δ = [+0.1, +0.2, +0.15]: mean 0.15, sd 0.05, half-width 0.1242069 > 0: higher is better
    prec = v.changes["sample_precision"]
    assert (prec.absolute.low, prec.absolute.high) == pytest.approx((0.0257931, 0.2742069), abs=1e-6)
    assert prec.verdict == "better" and v.changes["sample_recall"].verdict == NO_DIFFERENCE
    assert base.changes["fd"].verdict == "reference" and base.changes["fd"].mean == pytest.approx(20.0)
    assert summary_line(v, base).startswith("v: val loss +0.0% [+0.0, +0.0] (no detectable difference), "
                                            "throughput +0.0% [+0.0, +0.0] (no detectable difference), "
                                            "fd -2.00 [-3.24, -0.76] (better), ")


def test_quality_metrics_are_compared_only_when_measured():
    runs = _quality_runs()
    assert list(compare_variants(runs.drop(columns=list(QUALITY_METRICS)), {"base": "", "v": ""}, seeds=3)[1].changes) == [
        "val_loss", "train_throughput"]
    unmeasured = runs.assign(**{m: None for m in QUALITY_METRICS})  # collect_runs' columns of a run without quality
    assert list(compare_variants(unmeasured, {"base": "", "v": ""}, seeds=3)[1].changes) == ["val_loss", "train_throughput"]
    only_fd = compare_variants(runs, {"base": "", "v": ""}, seeds=3, metrics=compared_metrics(["fd"]))
    assert list(only_fd[1].changes) == ["val_loss", "train_throughput", "fd"]


def test_quality_renderings_show_the_fd_change(tmp_path):
    comparisons = compare_variants(_quality_runs(), {"base": "ref", "v": "a variant"}, seeds=3)
    row = comparison_frame(comparisons).set_index("variant").loc["v"]
    assert (row["delta_fd_abs"], row["delta_fd_abs_low"], row["delta_fd_abs_high"]) == pytest.approx(
        (-2.0, -3.2420693, -0.7579307), abs=1e-6)
    assert row["fd_verdict"] == "better" and row["fd"] == pytest.approx(18.0) and math.isnan(row["delta_kid_pct"])
    assert row["loss_verdict"] == NO_DIFFERENCE  # the old columns keep their names
    md = comparison_markdown(comparisons, "demo", seeds=3)
    assert "| Δ fd [95% CI] | verdict |" in md and "fd 20, kid 0.2" in md
    assert "| -2.00 [-3.24, -0.76] | better |" in next(line for line in md.splitlines() if line.startswith("| v |"))
    table = comparison_table(comparisons, title="demo")
    assert [c.name for c in table.columns][3:7] == list(QUALITY_METRICS)
    assert table.rows[1][3].plain == "-2.00 [-3.24, -0.76]\nbetter"
    data = forest_data(comparisons)
    fd = data[data["metric"] == "fd"].iloc[0]
    assert (fd["variant"], fd["mean"], fd["low"], fd["verdict"]) == ("v", -2.0, pytest.approx(-3.2420693), "better")
    assert fd["panel"] == "Δ Fréchet distance (FD) vs base   ← better"
    assert list(data["metric"].unique()) == ["val_loss", "train_throughput", *QUALITY_METRICS]  # a panel each
    assert forest_plot(comparisons, tmp_path / "forest.png", "demo", seeds=3).read_bytes()[:4] == b"\x89PNG"


def test_an_ablation_measures_quality_when_its_file_or_the_flag_asks():
    spec = ablation_from_dict(TINY)
    assert spec.eval.quality is None and spec.with_quality(False) is spec and spec.compared == ["val_loss", "train_throughput"]
    assert spec.trial_space("add", 0).eval.quality is None
    asked = spec.with_quality(True)  # ablate --quality: eval.quality's defaults
    assert asked.eval.quality == QualityConfig() and asked.compared == ["val_loss", "train_throughput", *QUALITY_METRICS]
    assert asked.trial_space("add", 0).eval.quality == QualityConfig()  # what every run measures
    written = ablation_from_dict(_with(eval={"quality": {"metrics": ["kid", "fd"], "num_samples": 50}}))
    assert written.compared == ["val_loss", "train_throughput", "fd", "kid"]
    assert written.with_quality(True).eval.quality.num_samples == 50  # the file's section stands
    assert written.trial_space("base", 1).eval.quality.num_samples == 50


# --------------------------------------------------------------------------- loading

TINY = {
    "base": {"levels": [{"width": 8, "blocks": 1}, {"width": 16, "blocks": 1}], "block": {"norm": {"groups": 4}},
             "middle": {"blocks": 1, "attention": False}},
    "variants": {"add": {"description": "add skips", "skip": {"combine": "add", "project": True}}},
    "data": {"source": "synthetic", "image_size": 8},
}


def _with(**changes):
    data = {**TINY, **changes}
    return data


def _errors(data) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        ablation_from_dict(data)
    return info.value.lines()


def test_shipped_ablations_load():
    seed = load_ablation(SHIPPED / "seed_design_choices.yaml")
    names = [name for name, _ in seed.variant_configs()]
    assert names == ["base", "no-norm", "relu", "attention-everywhere", "no-attention", "add-skips", "adagn"]
    assert seed.num_trials == 21 and seed.study.name == "seed_design_choices"
    configs = dict(seed.variant_configs())
    assert configs["base"].image_size == 16 and configs["base"].in_channels == 1  # from data
    assert configs["no-norm"].block.norm.kind == "none"
    assert [lv.attention for lv in configs["attention-everywhere"].levels] == [True, True, True]
    assert [lv.attention for lv in configs["base"].levels] == [False, False, False]
    adm = load_ablation(SHIPPED / "adm_architecture.yaml")
    configs = dict(adm.variant_configs())
    assert configs["base"].compact.attention_resolutions == [16] and configs["base"].image_size == 32
    assert configs["attention-32-16-8"].compact.attention_resolutions == [32, 16, 8]
    assert configs["attention-32-16-8"].compact.base_width == 160  # merged, not replaced
    assert configs["biggan-updown"].down.kind == "resblock" and configs["rescale"].block.rescale
    assert configs["adagn"].block.time_injection == "scale_shift"
    modern = load_ablation(SHIPPED / "modern_unet.yaml")
    configs = dict(modern.variant_configs())
    assert modern.num_trials == 24 and configs["base"].block.time_injection == "scale_shift"
    assert configs["songunet-residual-encoder"].encoder_type == "residual"
    assert configs["fir-resampling"].resample_filter == [1, 3, 3, 1]
    assert configs["mp-blocks"].block.kind == "mp" and configs["mp-blocks"].levels == configs["base"].levels
    assert configs["transformer-middle"].middle.kind == "transformer"
    assert modern.train_config(0, "mp-blocks").lr == modern.train.lr == 2e-3
    assert modern.train_config(0, "mp-blocks-lr4e-2").lr == 4e-2


def test_overrides_merge_nested_mappings_and_dotted_keys():
    spec = ablation_from_dict(_with(variants={
        "attn": {"levels.1.attention": True},
        "nonorm": {"block": {"norm": {"kind": "none"}}},  # switching kind drops `groups`
        "narrow": {"levels.0": {"width": 4}},              # a mapping merged at a dotted path
    }))
    configs = dict(spec.variant_configs())
    assert [lv.attention for lv in configs["attn"].levels] == [False, True]
    assert configs["nonorm"].block.norm.kind == "none"
    assert configs["narrow"].levels[0].width == 4 and configs["narrow"].levels[0].blocks == 1
    assert spec.description("attn") == "" and spec.description("base") == "the reference network"


def test_variant_errors_name_the_variant_and_the_field():
    lines = _errors(_with(variants={
        "typo": {"blok": {"activation": "relu"}},
        "groups": {"block": {"norm": {"groups": 3}}},
        "index": {"levels.5.attention": True},
        "size": {"image_size": 16},
        "same": {"block": {"activation": "silu"}},
    }))
    text = "\n".join(lines)
    assert any(line.startswith("variants.typo.blok: unknown field") for line in lines), text
    assert any(line.startswith("variants.groups.") and "groups" in line and "3" in line for line in lines), text
    assert any(line.startswith("variants.index.levels.5.attention: index 5 is out of range") for line in lines), text
    assert any(line.startswith("variants.size.image_size: is set by data.image_size") for line in lines), text
    assert "variants.same: builds the same network as the base and trains it alike; change a field or drop it" in lines


def test_a_variant_may_train_its_network_its_own_way():
    from archsearch.ablation.runner import pair_identities

    spec = ablation_from_dict(_with(train={"lr": 1e-3, "steps": 7}, seeds=2, variants={
        "add": TINY["variants"]["add"],
        "add-fast": {**TINY["variants"]["add"], "train": {"lr": 1e-2}},
        "base-fast": {"description": "the base at a higher learning rate", "train": {"lr": 1e-2}},
    }))
    assert spec.train_config(1).lr == 1e-3 and spec.train_config(1, "add").lr == 1e-3
    fast = spec.train_config(1, "add-fast")
    assert (fast.lr, fast.steps, fast.seed) == (1e-2, 7, 1)  # the file's settings under the variant's
    assert spec.trial_space("add-fast", 1).fixed_train() == fast
    assert spec.architecture("add-fast") == spec.architecture("add")  # `train` is no override of the network
    assert spec.architecture("base-fast") == spec.architecture("base")
    ids = pair_identities(spec)
    assert ids[("add", 0)][0] == ids[("add-fast", 0)][0] and ids[("add", 0)][1] != ids[("add-fast", 0)][1]
    assert ids[("base", 0)][0] == ids[("base-fast", 0)][0] and ids[("base", 0)][1] != ids[("base-fast", 0)][1]


def test_a_variant_s_training_errors_name_the_variant():
    lines = _errors(_with(variants={
        "typo": {"train": {"lrr": 1e-2}},
        "bad": {"train": {"lr": -1}},
        "seed": {"train": {"seed": 4}},
        "empty": {"train": {}},
        "same": {"train": {"lr": 1e-3}},  # the default learning rate: the base, trained alike
    }))
    text = "\n".join(lines)
    assert any(line.startswith("variants.typo.train.lrr: unknown field") for line in lines), text
    assert any(line.startswith("variants.bad.train.lr: ") for line in lines), text
    assert any(line.startswith("variants.seed.train.seed: is set by `seeds`") for line in lines), text
    assert any(line.startswith("variants.empty.train: must be a mapping of training settings") for line in lines), text
    assert "variants.same: builds the same network as the base and trains it alike; change a field or drop it" in lines
    dist = _errors(_with(variants={"dist": {"train": {"lr": {"choice": [1e-3, 1e-2]}}}}))
    assert dist[0].startswith("variants.dist.train.lr: a distribution")


def test_section_errors():
    assert _errors(_with(train={"seed": 3}))[0].startswith("train.seed: is set by `seeds`")
    lines = _errors(_with(variants={"v": {"block": {"activation": {"choice": ["relu", "gelu"]}}}}))
    assert lines[0].startswith("variants.v.block.activation: a distribution")
    assert any(line.startswith("variants:") and "'base' names the reference" in line
               for line in _errors(_with(variants={"base": {"block": {"activation": "relu"}}})))
    assert any(line.startswith("variants") for line in _errors(_with(variants={})))
    assert any(line.startswith("base.image_size: 32 but data.image_size is 8") for line in _errors(_with(base={**TINY["base"], "image_size": 32})))
    assert _errors(_with(base={"base": "nope"}))[0].startswith("base.base: unknown preset 'nope'")
    assert any(line.startswith("seeds:") for line in _errors(_with(seeds=0)))


def test_load_ablation_names_the_study_after_the_file_and_applies_sets(tmp_path):
    import yaml

    path = tmp_path / "my_ablation.yaml"
    path.write_text(yaml.safe_dump(TINY))
    spec = load_ablation(path, {"seeds": 5, "variants.add.description": "sum"})
    assert spec.study.name == "my_ablation" and spec.seeds == 5 and spec.description("add") == "sum"
    space = spec.trial_space("add", 4)
    assert space.is_fixed() and space.fixed_train().seed == 4 and space.fixed_architecture().skip.combine == "add"


# --------------------------------------------------------------------------- resume bookkeeping


def _trial(number, state, pair, **attrs):
    from types import SimpleNamespace

    ident = {"config_hash": f"c-{pair[0]}", "settings_hash": f"s-{pair[1]}"}
    return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs={**ident, **attrs})


def test_finished_pairs_are_skipped_and_interrupted_ones_rerun():
    from archsearch.ablation.runner import collect_runs
    from archsearch.search.engine import pending, unfinished

    identities = {(name, seed): (f"c-{name}", f"s-{seed}") for name in ("base", "v") for seed in (0, 1)}
    trials = [
        _trial(0, "COMPLETE", ("base", 0), val_loss=1.0, train_throughput=10.0),
        _trial(1, "FAIL", ("base", 1), outcome="interrupted", fail_reason="interrupted: stopped by the user"),
        _trial(2, "FAIL", ("v", 0), outcome="diverged", fail_reason="diverged: nan"),
        _trial(3, "RUNNING", ("v", 1)),
        _trial(4, "COMPLETE", ("v", 0), val_loss=2.0, train_throughput=5.0),  # a later success replaces the failure
        _trial(5, "COMPLETE", ("base", 0), val_loss=9.0, reused_from=0),       # a duplicate: the first one counts
        _trial(6, "COMPLETE", ("other", 0), val_loss=3.0),                     # not in this file
    ]
    assert pending(trials, identities) == [("base", 1)]
    assert unfinished(trials, identities) == [("base", 1), ("v", 1)]  # (v, 1) is running somewhere
    runs = collect_runs(trials, identities)
    assert runs[["variant", "seed", "number", "state"]].values.tolist() == [["base", 0, 0, "COMPLETE"], ["v", 0, 4, "COMPLETE"]]
    assert runs["val_loss"].tolist() == [1.0, 2.0]
