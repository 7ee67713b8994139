"""`archsearch ablate` end to end on a tiny ablation: the files, the table, and resuming."""

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.results import open_study

runner = CliRunner()

TINY = {
    "study": {"name": "tiny", "device": "cpu"},
    "base": {"levels": [{"width": 8, "blocks": 1}, {"width": 8, "blocks": 1}], "middle": {"blocks": 1, "attention": False},
             "block": {"norm": {"groups": 2}}, "embedding": {"dim": 8}},
    "variants": {
        "add-skips": {"description": "add skips instead of concat", "skip": {"combine": "add", "project": True}},
        "relu": {"description": "ReLU instead of SiLU", "block": {"activation": "relu"}},
    },
    "seeds": 2,
    "data": {"source": "synthetic", "image_size": 8, "num_images": 48},
    "train": {"steps": 3, "batch_size": 8, "warmup_steps": 1, "log_every": 3},
    "eval": {"num_images": 8, "timesteps": 5, "curve_points": 0},
    "measure": {"warmup_steps": 1, "repeats": 3, "infer": False, "latency": False},
}


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _journal_trials(study_dir):
    """trials.csv as `ablate` writes it (the results table plus a `variant` column)."""
    return pd.read_csv(study_dir / "trials.csv")


@pytest.fixture
def ablation_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


def test_ablate_runs_every_network_and_seed_writes_the_report_and_resumes(ablation_file, tmp_path):
    out = tmp_path / "results"
    result = invoke("ablate", str(ablation_file), "--results-dir", str(out))
    assert result.exit_code == 0, result.output
    study = out / "tiny"
    trials = _journal_trials(study)
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    assert sorted(zip(trials["variant"], trials["train.seed"])) == sorted(
        (name, seed) for name in ("base", "add-skips", "relu") for seed in (0, 1))
    assert "architecture.skip.combine" in trials.columns  # a field's one name, as in a search's table
    assert open_study(study).user_attrs["format_version"] == 2  # an ablation's study records it too

    # The table: the base, then each variant with its interval and verdict.
    assert "tiny: each variant vs the base" in result.output
    for name in ("base", "add-skips", "relu"):
        assert name in result.output
    assert "% [" in result.output

    table = pd.read_csv(study / "ablation.csv")
    assert list(table["variant"]) == ["base", "add-skips", "relu"]
    assert (table["seeds"] == 2).all() and table.loc[0, "loss_verdict"] == "reference"
    assert "fd" not in table.columns and "fd" not in result.output.split()  # no sample quality unless asked for
    assert table.loc[1, "params_change_pct"] < 0  # add-skips drops the wider decoder convs
    assert table.loc[2, "params_change_pct"] == 0
    md = (study / "ablation.md").read_text()
    assert "| add-skips | add skips instead of concat |" in md and "![forest plot](plots/forest.png)" in md
    assert (study / "plots" / "forest.png").read_bytes()[:4] == b"\x89PNG"
    assert (study / "trials.csv").exists() and (study / "trials" / "5" / "metrics.json").exists()
    assert yaml.safe_load((study / "ablation.yaml").read_text())["seeds"] == 2

    # A rerun trains nothing and reports the same numbers.
    again = invoke("ablate", str(ablation_file), "--results-dir", str(out))
    assert again.exit_code == 0, again.output
    assert "trial " not in again.output  # no trial line: nothing trained
    assert len(_journal_trials(study)) == 6
    pd.testing.assert_frame_equal(pd.read_csv(study / "ablation.csv"), table)

    # One more seed trains exactly the three new pairs.
    more = invoke("ablate", str(ablation_file), "--results-dir", str(out), "--set", "seeds=3")
    assert more.exit_code == 0, more.output
    trials = _journal_trials(study)
    assert len(trials) == 9 and sorted(trials["train.seed"].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (pd.read_csv(study / "ablation.csv")["seeds"] == 3).all()


def test_ablate_with_quality_shows_the_change_in_fd_with_an_interval(tmp_path):
    """`--quality` on a file without eval.quality: every run measures sample quality (here a tiny
    phase, its reference statistics cached under tmp_path), and each variant's Δ fd gets its
    paired interval in the table, the csv, the words and the plot."""
    import re

    data = {**TINY, "study": {"name": "tinyq", "device": "cpu"}, "data": {"source": "digits", "image_size": 8},
            "variants": {"add-skips": TINY["variants"]["add-skips"]}}
    path = tmp_path / "tinyq.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    sets = ["eval.quality.num_samples=30", "eval.quality.reference_samples=60", "eval.quality.batch_size=30",
            "eval.quality.sampler.kind=ddim", "eval.quality.sampler.steps=5", "eval.quality.kid_subset_size=20",
            "eval.quality.kid_subsets=5", f"eval.quality.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "results"
    result = invoke("ablate", str(path), "--results-dir", str(out), "--quality", *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert re.search(r"trial \d \(base, seed 0\): val_loss [\d.]+, [\d.]+ images/s, fd [\d.]+", result.output)
    interval = r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]"
    header = next(line for line in result.output.splitlines() if line.lstrip().startswith("variant"))
    assert header.split()[header.split().index("throughput") + 1:][:4] == ["fd", "kid", "sample_precision", "sample_recall"]
    row = next(line for line in result.output.splitlines() if line.startswith("add-skips"))
    assert len(re.findall(interval, row)) == 4  # Δ fd, kid, precision, recall beside the loss's and the speed's %
    study = out / "tinyq"
    table = pd.read_csv(study / "ablation.csv").set_index("variant")
    fd = table.loc["add-skips", ["delta_fd_abs", "delta_fd_abs_low", "delta_fd_abs_high"]]
    assert fd.notna().all() and fd.iloc[1] <= fd.iloc[0] <= fd.iloc[2] and table.loc["base", "fd"] > 0
    md = (study / "ablation.md").read_text()
    assert re.search(rf"- add-skips: val loss .*, fd {interval} \(", md) and "| Δ fd [95% CI] |" in md
    trials = _journal_trials(study)
    assert trials["fd"].notna().all() and len(trials) == 4
    assert yaml.safe_load((study / "ablation.yaml").read_text())["eval"]["quality"]["num_samples"] == 30

    # The report alone, rebuilt from the storage, still compares fd (the runs were measured with it).
    again = invoke("ablate", str(path), "--results-dir", str(out), "--report-only", "--quality",
                   *[a for s in sets for a in ("--set", s)])
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(study / "ablation.csv").set_index("variant"), table)


def test_ablate_rejects_a_bad_file_before_writing_anything(ablation_file, tmp_path):
    data = yaml.safe_load(ablation_file.read_text())
    data["variants"]["relu"]["block"] = {"activaton": "relu"}
    ablation_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "results"
    result = runner.invoke(app, ["ablate", str(ablation_file), "--results-dir", str(out)])
    assert result.exit_code == 2
    assert "variants.relu.block.activaton: unknown field" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_report_only_needs_a_finished_run(ablation_file, tmp_path):
    result = runner.invoke(app, ["ablate", str(ablation_file), "--results-dir", str(tmp_path), "--report-only"])
    assert result.exit_code == 2
    assert "holds no ablation yet" in result.output


@pytest.mark.slow
def test_the_shipped_modern_unet_ablation_trains_every_network(tmp_path):
    """Every network of search_spaces/ablations/modern_unet.yaml trains through `ablate` (2 steps
    each), the mp variant at its own learning rate: the README's table comes from this file."""
    from pathlib import Path

    shipped = Path(__file__).parent.parent / "search_spaces" / "ablations" / "modern_unet.yaml"
    sets = ["seeds=1", "train.steps=2", "train.warmup_steps=1", "eval.num_images=16", "measure.repeats=3",
            "measure.max_seconds=1"]
    result = invoke("ablate", str(shipped), "--results-dir", str(tmp_path), *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    trials = _journal_trials(tmp_path / "modern_unet")
    assert sorted(trials["variant"]) == sorted(["base", "songunet-residual-encoder", "songunet-skip-decoder",
                                                "fir-resampling", "ddpmpp-blocks", "mp-blocks", "mp-blocks-lr4e-2",
                                                "transformer-middle"])
    assert (trials["state"] == "COMPLETE").all()
    lrs = dict(zip(trials["variant"], trials["train.lr"]))
    assert lrs["mp-blocks-lr4e-2"] == 4e-2 and lrs["mp-blocks"] == lrs["base"] == 2e-3
