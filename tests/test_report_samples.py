"""The report's "Samples" section (archsearch.report.samples): a grid per front member with saved
weights, one sampler for all, the members without one and why, a cache that makes a second
report draw nothing, and a reused trial drawn with its origin's weights.

The study is test_report_cli's (front #0, #1, #3, #5), its space's `eval.samples` made tiny (a
2x3 DDIM grid of 2 steps); trials get random-weight checkpoints of a 16x16 U-Net in
archsearch.train's format, as `study.checkpoints` keeps them.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from export_study import save_random_checkpoint, trial_config
from PIL import Image
from test_report_cli import make_study
from typer.testing import CliRunner

import archsearch.samples as samples_module
from archsearch.cli import app
from archsearch.report.build import make_report
from archsearch.report.samples import SIDECAR_NAME, draw_grids, plan_grids, sample_blocks, weights_of
from archsearch.results import load_results
from archsearch.samples import strip_caption
from archsearch.search.storage import open_storage

SAMPLES = {"sampler": {"kind": "ddim", "steps": 2}, "rows": 2, "cols": 3, "seed": 5}
GRID = (3 * 65 + 1, 2 * 65 + 1)  # 16x16 images x4: 64-pixel cells, 1-pixel lines


def tiny_sampler(folder: Path) -> None:
    space = yaml.safe_load((folder / "space.yaml").read_text())
    space["eval"]["samples"] = SAMPLES
    (folder / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))


def checkpoint(folder: Path, number: int) -> Path:
    return save_random_checkpoint(folder / "trials" / str(number) / "checkpoint.pt", trial_config(0))


@pytest.fixture
def study(tmp_path) -> Path:
    """Front #0, #1 with weights, #3 without, #5 with a file that is no checkpoint."""
    folder = make_study(tmp_path / "tiny", "tiny")
    tiny_sampler(folder)
    checkpoint(folder, 0)
    checkpoint(folder, 1)
    (folder / "trials" / "5").mkdir(parents=True)
    (folder / "trials" / "5" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return folder


def count_sampling(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = samples_module.checkpoint_samples

    def counted(path, cfg, device="auto"):
        calls.append(Path(path))
        return real(path, cfg, device)

    monkeypatch.setattr(samples_module, "checkpoint_samples", counted)
    return calls


def test_the_section_shows_each_grid_and_says_why_the_others_have_none(study, monkeypatch):
    calls = count_sampling(monkeypatch)
    result = CliRunner().invoke(app, ["report", str(study)])
    assert result.exit_code == 0, result.output
    assert sorted(p.parent.name for p in calls) == ["0", "1", "5"]  # #5 is tried, and fails to load
    assert "sample grids: 2 front members → trials/<n>/samples.png (1 without weights, 1 failed to load)" in \
        " ".join(result.output.split())

    for n in (0, 1):
        with Image.open(study / "trials" / str(n) / "samples.png") as image:
            assert image.mode == "L" and image.width == GRID[0] and image.height > GRID[1] + 12  # grid + caption strip
        sidecar = json.loads((study / "trials" / str(n) / SIDECAR_NAME).read_text())
        assert sidecar["grid"] == list(GRID) and sidecar["scale_used"] == 4
        assert sidecar["key"]["sampler"]["sampler"] == {"kind": "ddim", "steps": 2, "eta": 0.0}
    assert not (study / "trials" / "3" / "samples.png").exists() and not (study / "trials" / "5" / "samples.png").exists()

    md = (study / "report.md").read_text()
    section = md.split("## Samples from the front's models", 1)[1].split("\n## ", 1)[0]
    assert "The same sampler, steps and noise seed for every grid: DDIM with 2 steps, eta 0, noise seed 5, a 2×3 grid, " \
           "each image enlarged ×4 (nearest neighbour), sampled on the CPU" in section
    assert "![samples of trial 0](trials/0/samples.png)" in section and "![samples of trial 1](trials/1/samples.png)" in section
    assert "*trial 1 · val_loss 0.2 · train_throughput 500 img/s*" in section
    missing = "no checkpoint: study.checkpoints is front, but the trial ran before checkpoints were saved"
    assert f"**#3**: {missing}" in section
    assert "**#5**: checkpoint: " in section and "is not a readable checkpoint" in section
    html = (study / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 + 2  # the five plots and two grids, embedded
    assert "trial 0 · val_loss 0.3 · train_throughput 900 img/s" in html and "trials/0/samples.png" not in html
    assert missing in html


def test_a_second_report_samples_nothing_unless_a_checkpoint_changes(study, monkeypatch):
    make_report([study], importances=False)
    grid = study / "trials" / "0" / "samples.png"
    before = grid.stat().st_mtime_ns, grid.read_bytes()
    calls = count_sampling(monkeypatch)
    _, files = make_report([study], importances=False)
    assert calls == []
    assert (grid.stat().st_mtime_ns, grid.read_bytes()) == before
    assert {g.number: g.status for g in files.samples["tiny"].grids} == {0: "cached", 1: "cached", 3: "missing", 5: "failed"}

    os.utime(study / "trials" / "1" / "checkpoint.pt", ns=(1, 1))  # the trial's weights were saved again
    make_report([study], importances=False)
    assert [p.parent.name for p in calls] == ["1"]


def test_a_new_caption_is_drawn_on_the_cached_grid_without_sampling(study, monkeypatch):
    df = load_results(study)
    space = yaml.safe_load((study / "space.yaml").read_text())
    objectives = ["val_loss", "train_throughput"]
    plan = plan_grids(study, space, df, df[df["number"] == 0], objectives)
    [drawn] = draw_grids(plan).grids
    with Image.open(drawn.path) as image:
        first = np.asarray(strip_caption(image, GRID)).copy()
    calls = count_sampling(monkeypatch)
    plan.grids[0].caption = "trial 0\nsomething else entirely, and a longer line than before"
    [again] = draw_grids(plan).grids
    assert again.status == "cached" and calls == []
    with Image.open(again.path) as image:
        assert image.width > drawn.size[0] > GRID[0] - 1  # widened for its longer line
        assert np.array_equal(np.asarray(strip_caption(image, GRID)), first)  # the same samples
    assert json.loads((study / "trials" / "0" / SIDECAR_NAME).read_text())["caption"] == plan.grids[0].caption


def test_weights_that_do_not_fit_the_config_are_reported_not_raised(study):
    from archsearch.nn import build_unet
    from archsearch.schema.train import TrainConfig
    from archsearch.train import save_checkpoint

    path = study / "trials" / "3" / "checkpoint.pt"
    other = trial_config(0).model_dump(mode="json")
    other["levels"][0]["width"] = 8  # the config says 8 channels, the weights have 16
    save_checkpoint(path, build_unet(trial_config(0)), other, TrainConfig().model_dump(mode="json"), {})
    _, files = make_report([study], importances=False)
    [grid] = [g for g in files.samples["tiny"].grids if g.number == 3]
    assert grid.status == "failed" and grid.reason.startswith(f"{path}: its weights do not fit its config")
    assert "its weights do not fit its config" in (study / "report.md").read_text()


def add_reused_trial(folder: Path, origin: int) -> int:
    """A duplicate of trial `origin`, as the search records one: its result, `reused_from`, no weights."""
    study = optuna.load_study(study_name="tiny", storage=open_storage(None, folder))
    original = next(t for t in study.trials if t.number == origin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.add_trial(optuna.trial.create_trial(params=original.params, distributions=original.distributions,
                                                  values=original.values,
                                                  user_attrs={**original.user_attrs, "reused_from": origin}))
    return len(study.trials) - 1


def test_a_reused_trial_is_drawn_with_its_origins_weights(study):
    number = add_reused_trial(study, 1)
    df = load_results(study)
    assert weights_of(study, df, number) == (study / "trials" / "1" / "checkpoint.pt", 1)
    assert weights_of(study, df, 3) == (None, None)
    space = yaml.safe_load((study / "space.yaml").read_text())
    plan = plan_grids(study, space, df, df[df["number"] == number], ["val_loss", "train_throughput"])
    [grid] = draw_grids(plan).grids
    assert grid.status == "drawn" and grid.origin == 1 and grid.path == study / "trials" / str(number) / "samples.png"
    [image] = [b for b in sample_blocks(draw_grids(plan), 2) if type(b).__name__ == "Image"]
    assert image.caption.endswith("(weights of trial #1, which it reused)")
    # Its origin's grid is the same picture: the same weights, sampler and noise.
    [origin] = draw_grids(plan_grids(study, space, df, df[df["number"] == 1], ["val_loss"])).grids
    with Image.open(grid.path) as a, Image.open(origin.path) as b:
        assert np.array_equal(np.asarray(strip_caption(a, GRID)), np.asarray(strip_caption(b, GRID)))


def test_without_any_weights_the_section_is_one_line_on_how_to_get_grids(tmp_path):
    folder = make_study(tmp_path / "bare", "bare")
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    section = (folder / "report.md").read_text().split("## Samples from the front's models\n\n", 1)[1].split("\n## ", 1)[0]
    assert section.strip().splitlines() == [(
        "No front member has saved weights, so there are no sample grids: set `study.checkpoints: front` (or `all`) "
        "in the space file so that trials keep their final weights, then run `archsearch report` again.")]
    assert "sample grids: none (no front member has saved weights" in " ".join(result.output.split())


def test_no_samples_skips_the_section(study, monkeypatch):
    calls = count_sampling(monkeypatch)
    result = CliRunner().invoke(app, ["report", str(study), "--no-samples"])
    assert result.exit_code == 0, result.output
    assert calls == [] and "Samples from the front" not in (study / "report.md").read_text()
    assert not (study / "trials" / "0" / "samples.png").exists()


def test_a_comparison_links_each_studys_grids_from_the_report_folder(study, tmp_path):
    other = make_study(tmp_path / "other", "other")
    out = tmp_path / "cmp"
    make_report([study, other], out=out, importances=False)
    md = (out / "report.md").read_text()
    assert "![samples of trial 0](../tiny/trials/0/samples.png)" in md
