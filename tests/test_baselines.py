"""Hand-designed baselines on the front (`study.baselines`): validated at load time, trained as
fixed trials of `<name>-baselines` (never counted toward the search, never seen by its sampler,
not retrained by a rerun), and compared with the front in the report."""
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from archsearch import run_study
from archsearch.cli import app
from archsearch.errors import ConfigErrors
from archsearch.report.baselines import against_baselines
from archsearch.results import open_study
from archsearch.schema.space import baseline_architectures, space_from_dict

from test_study import TINY, merged, trained  # noqa: F401 - the fixture

OBJECTIVES, DIRECTIONS = ["val_loss", "train_throughput_normalized"], ["minimize", "maximize"]
# Two levels of 8 and 16 channels with 4 norm groups: a small network at the tiny study's 8x8.
SMALL = {"name": "small", "base": "seed", "levels": [{"width": 8, "blocks": 1, "decoder_width": 8},
                                                     {"width": 16, "blocks": 1, "decoder_width": 8}],
         "block": {"norm": {"groups": 4}}, "embedding": {"dim": 8, "out_dim": 8}}


def test_domination_on_a_hand_made_table():
    front = pd.DataFrame({"number": [3, 5, 7], "val_loss": [0.10, 0.20, 0.30],
                          "train_throughput_normalized": [100.0, 400.0, 900.0]})
    baselines = pd.DataFrame({
        "number": [0, 1, 2, 3],
        "state": ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"],
        "baseline": ["seed", "fast", "equal", "broken"],
        "val_loss": [0.25, 0.05, 0.20, None],
        "train_throughput_normalized": [200.0, 1000.0, 400.0, None],
        "fail_reason": [None, None, None, "oom"],
    })
    seed, fast, equal, broken = against_baselines(front, baselines, OBJECTIVES, DIRECTIONS)
    # #5 (0.20 at 400/s) is 2x as fast and 20% lower; #3 is faster at lower loss too? 100 < 200: no.
    assert list(seed.dominators["number"]) == [5]
    assert seed.dominators.iloc[0]["train_throughput_normalized"] == pytest.approx(2.0)
    assert seed.dominators.iloc[0]["val_loss"] == pytest.approx(20.0)
    assert seed.best == {"val_loss": pytest.approx(20.0), "train_throughput_normalized": pytest.approx(2.0)}
    assert fast.dominators.empty and fast.best == {}       # better than every member in both
    assert equal.dominators.empty                         # the same point as #5 is not dominated by it
    assert broken.state == "FAIL" and broken.fail_reason == "oom" and broken.dominators.empty
    assert math.isnan(broken.values["val_loss"])


def test_several_members_dominate_with_their_own_gains():
    front = pd.DataFrame({"number": [1, 2], "val_loss": [0.1, 0.2], "train_throughput_normalized": [300.0, 600.0]})
    baselines = pd.DataFrame({"number": [0], "state": ["COMPLETE"], "baseline": ["seed"], "val_loss": [0.4],
                              "train_throughput_normalized": [150.0]})
    (verdict,) = against_baselines(front, baselines, OBJECTIVES, DIRECTIONS)
    assert list(verdict.dominators["number"]) == [1, 2]
    assert list(verdict.dominators["train_throughput_normalized"]) == pytest.approx([2.0, 4.0])
    assert list(verdict.dominators["val_loss"]) == pytest.approx([75.0, 50.0])
    assert verdict.best == {"val_loss": pytest.approx(75.0), "train_throughput_normalized": pytest.approx(4.0)}


@pytest.mark.parametrize("entry, path, words", [
    ("nope", "study.baselines.0", "not a preset"),
    (3, "study.baselines.0", "expected a preset name"),
    ({"base": "seed", "image_size": 16}, "study.baselines.0.image_size", "16 but the data's is 8"),
    ({"base": "seed", "levels": [{"width": 12}]}, "study.baselines.0.block.norm.groups", "does not divide"),
    ({"base": "nope"}, "study.baselines.0.base", "unknown preset"),
])
def test_a_bad_baseline_is_refused_at_load_time(entry, path, words):
    with pytest.raises(ConfigErrors) as exc:
        space_from_dict(merged(TINY, {"study": {"baselines": [entry]}}))
    assert any(e.path == path and words in e.message for e in exc.value.errors), exc.value.errors


def test_baselines_are_named_once_and_need_fixed_training(tmp_path):
    with pytest.raises(ConfigErrors, match="two baselines are named 'seed'"):
        space_from_dict(merged(TINY, {"study": {"baselines": ["seed", "seed"]}}))
    searched = merged(TINY, {"study": {"baselines": ["seed"]}, "train": {"lr": {"choice": [1e-3, 2e-3]}}})
    with pytest.raises(ConfigErrors, match="study.baselines: train.lr is searched"):
        space_from_dict(searched)
    file = tmp_path / "mine.yaml"
    file.write_text("base: seed\nlevels: [{width: 16, blocks: 1}]\n")
    space = space_from_dict(merged(TINY, {"study": {"baselines": ["seed", str(file), SMALL]}}))
    assert [(label, c.image_size, c.in_channels) for label, c in baseline_architectures(space)] == \
        [("seed", 8, 1), (str(file), 8, 1), ("small", 8, 1)]


def test_validate_exits_2_with_the_field(tmp_path):
    file = tmp_path / "space.yaml"
    file.write_text("data: {source: digits, image_size: 8}\nstudy: {baselines: [seed, nope]}\n"
                    "architecture: {levels: [{width: 8}], block: {norm: {groups: 4}}}\n")
    result = CliRunner().invoke(app, ["validate", str(file)])
    assert result.exit_code == 2 and "study.baselines.1: not a preset" in result.output


def test_a_baseline_runs_apart_from_the_search_and_once(tmp_path, trained):  # noqa: F811
    data = merged(TINY, {"study": {"baselines": [SMALL]}})
    summary = run_study(space_from_dict(data), tmp_path)
    search = open_study(tmp_path / "tiny")
    assert search.study_name == "tiny"  # the folder's own study, not its baselines'
    assert len(search.get_trials(deepcopy=False)) == data["study"]["trials"] == summary.trials
    assert all("baseline" not in t.user_attrs for t in search.get_trials(deepcopy=False))
    bstudy = open_study(tmp_path / "tiny", study="tiny-baselines")
    (trial,) = bstudy.get_trials(deepcopy=False)
    assert trial.state.name == "COMPLETE" and trial.user_attrs["baseline"] == "small"
    assert trial.params == {}  # a fixed trial: nothing sampled
    assert bstudy.user_attrs["kind"] == "baselines" and bstudy.user_attrs["baselines_of"] == "tiny"
    assert list(summary.baselines["baseline"]) == ["small"]
    assert (tmp_path / "tiny" / "baselines" / "trials.csv").exists()
    assert len(trained.calls) == 3  # two search trials and the baseline

    run_study(space_from_dict(data), tmp_path)  # a rerun: nothing to train
    assert len(trained.calls) == 3
    assert len(open_study(tmp_path / "tiny", study="tiny-baselines").get_trials(deepcopy=False)) == 1

    more = merged(data, {"study": {"trials": 3}})  # the search grows; its baseline is not retrained
    run_study(space_from_dict(more), tmp_path)
    assert len(trained.calls) == 4 and len(open_study(tmp_path / "tiny").get_trials(deepcopy=False)) == 3

    from archsearch.report.build import make_report

    report, files = make_report([tmp_path / "tiny"], importances=False, samples=False)
    (verdict,) = report.studies[0].baselines
    assert verdict.label == "small" and verdict.state == "COMPLETE"
    text = files.markdown.read_text()
    assert "## Against the baselines" in text and "| small" in text
    assert "none of the front" in text or "#" in text.split("## Against the baselines")[1].split("##")[0]
