"""`archsearch train --quality`: sample quality (fd, kid, precision, recall) at the end of a run and,
with --eval-every, at each evaluation on the way: printed per evaluation, written to the metrics.
Tiny real runs (8x8 digits, 4 steps, 20 samples by DDIM 5 steps: a few seconds each)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

import archsearch.schema.quality as quality_schema
from archsearch.cli import app
from archsearch.metrics import QUALITY_METRICS
from archsearch.retrain import train_job

from test_cli_train import TRAIN_FILE

runner = CliRunner()
SMALL = {"num_samples": 20, "batch_size": 20, "sampler": {"kind": "ddim", "steps": 5}, "kid_subsets": 5,
         "kid_subset_size": 10}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "200"})


def write(tmp_path, **eval_extra) -> str:
    space = {**TRAIN_FILE, "train": {**TRAIN_FILE["train"], "steps": 4},
             "eval": {**TRAIN_FILE["eval"], **eval_extra}}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture
def small_defaults(tmp_path, monkeypatch):
    """eval.quality's defaults (what --quality turns on in a space without the section), made
    small: 1,000 samples by DDIM 50 steps would take a minute here."""
    real = quality_schema.QualityConfig
    monkeypatch.setattr(quality_schema, "QualityConfig", lambda: real(**SMALL, cache_dir=str(tmp_path / "cache")))


def rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"step +\d+/4 ", line)]


def test_quality_is_measured_at_each_evaluation_and_at_the_end(tmp_path, small_defaults):
    out = tmp_path / "m.json"
    result = invoke("train", write(tmp_path), "--quality", "--eval-every", 2, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    (row,) = rows(result.output)  # the evaluation at step 2; the final one is the table
    assert re.fullmatch(r"step 2/4  val_loss \S+  fd \S+  kid \S+  sample_precision \S+  sample_recall \S+", row), row
    fd_at_2 = float(row.split("  fd ")[1].split()[0])
    assert [s for s, _ in metrics["quality_curve"]] == [2, 4]
    assert metrics["quality_curve"][0][1] == pytest.approx(fd_at_2, rel=1e-3)
    assert metrics["quality_curve"][-1][1] == metrics["fd"] > 0  # the final measurement is the curve's last point
    assert all(metrics[m] is not None for m in QUALITY_METRICS) and metrics["quality_seconds"] > 0
    assert 0 <= metrics["sample_precision"] <= 1 and 0 <= metrics["sample_recall"] <= 1
    assert {k: metrics["quality"][k] for k in ("features", "num_samples", "sampler")} == {
        "features": "digits", "num_samples": 20, "sampler": {"kind": "ddim", "steps": 5, "eta": 0.0}}
    table = {line.split()[0]: line for line in result.output.splitlines() if line.split()}
    assert {*QUALITY_METRICS, "quality_seconds", "quality_curve"} <= set(table)


def test_a_space_that_sets_eval_quality_measures_it_at_the_end_only_without_eval_every(tmp_path):
    out = tmp_path / "m.json"
    path = write(tmp_path, quality={**SMALL, "cache_dir": str(tmp_path / "cache")})
    result = invoke("train", path, "--out", out, "--device", "cpu")  # no --quality: the space asks
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["fd"] > 0 and metrics["quality"]["num_samples"] == 20
    assert metrics["quality_curve"] is None  # the default evaluations do not sample
    assert rows(result.output) and not any(" fd " in row for row in rows(result.output))


def test_without_quality_nothing_is_sampled_and_no_quality_rows_are_printed(tmp_path, small_defaults):
    out = tmp_path / "m.json"
    result = invoke("train", write(tmp_path), "--eval-every", 2, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert all(metrics[m] is None for m in (*QUALITY_METRICS, "quality_seconds", "quality", "quality_curve"))
    firsts = {line.split()[0] for line in result.output.splitlines() if line.split()}
    assert not firsts & {*QUALITY_METRICS, "quality_seconds"} and "val_loss" in firsts


def test_a_space_whose_objectives_name_fd_trains_with_quality(tmp_path):
    space = {**TRAIN_FILE, "objectives": [{"metric": "fd", "direction": "minimize"}]}
    path = tmp_path / "fd.yaml"
    path.write_text(yaml.safe_dump(space))
    assert train_job(path).space.eval.quality is not None
    assert train_job(write(tmp_path)).space.eval.quality is None
