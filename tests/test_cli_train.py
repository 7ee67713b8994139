"""`archsearch train` and `archsearch sample`: one architecture trained from a file, its metrics as
JSON, a checkpoint that `sample` turns into a PNG grid, and exit codes a script can rely on."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import archsearch.trial as trial_module
from archsearch.cli import app
from archsearch.metrics import TrialMetrics
from archsearch.trial import TrialResult

runner = CliRunner()

# The keys a user's script reads from `archsearch train --out` (issue 3's contract).
OUT_KEYS = ("val_loss", "val_loss_buckets", "learning_curve", "train_throughput", "train_throughput_iqr",
            "infer_throughput", "latency_ms", "params", "flops", "peak_mem_mb", "duration_s", "outcome", "device")

TRAIN_FILE = {
    "study": {"name": "one", "device": "cpu"},
    "data": {"source": "digits", "image_size": 8},
    "train": {"steps": 4, "batch_size": 8, "warmup_steps": 0, "log_every": 2},
    "eval": {"num_images": 16, "timesteps": 5, "curve_points": 1},
    "measure": {"warmup_steps": 1, "repeats": 3, "latency_repeats": 3},
    "architecture": {
        "levels": [{"width": 8, "blocks": 1}, {"width": 8, "blocks": 1, "attention": True}],
        "block": {"norm": {"groups": 4}},
        "middle": {"blocks": 1, "attention": False},
        "attention": {"head_channels": 8},
        "embedding": {"dim": 8},
    },
}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def train_file(tmp_path) -> Path:
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(TRAIN_FILE))
    return path


def test_train_writes_every_metric_and_a_checkpoint_that_samples(train_file, tmp_path):
    out, checkpoint = tmp_path / "m.json", tmp_path / "ckpt" / "m.pt"
    result = invoke("train", train_file, "--out", out, "--checkpoint", checkpoint, "--device", "cpu",
                    "--set", "train.steps=3")
    assert result.exit_code == 0, result.output
    assert f"metrics written to {out}" in result.output.replace("\n", "")
    assert "digits: 1617 train + 180 val images, 1x8x8" in result.stderr  # what data it trained on
    metrics = json.loads(out.read_text())
    missing = [k for k in OUT_KEYS if k not in metrics]
    assert not missing
    assert metrics["outcome"] == "completed" and metrics["steps_trained"] == 3  # the --set override
    assert all(metrics[k] > 0 for k in ("val_loss", "train_throughput", "infer_throughput", "latency_ms",
                                         "params", "flops", "peak_mem_mb", "duration_s"))
    assert len(metrics["val_loss_buckets"]) == 5 and [s for s, _ in metrics["learning_curve"]][-1] == 3

    grid = tmp_path / "grid.png"
    result = invoke("sample", checkpoint, "--out", grid, "--sampler", "ddim", "--steps", 3, "--rows", 2,
                    "--cols", 3, "--device", "cpu")
    assert result.exit_code == 0, result.output
    image = Image.open(grid)
    assert image.mode == "L" and image.size == (3 * 65 + 1, 2 * 65 + 1)  # 8x8 gray cells x8, 1-pixel lines


@pytest.mark.parametrize("outcome", ["oom", "diverged"])
def test_a_failed_run_still_writes_its_metrics_and_exits_1(train_file, tmp_path, monkeypatch, outcome):
    def failing(config, context, train_cfg, measure_cfg, **kwargs):
        return TrialResult(outcome, f"{outcome}: simulated", TrialMetrics(outcome=outcome, device="cpu", params=1))

    monkeypatch.setattr(trial_module, "run_trial", failing)
    out = tmp_path / "m.json"
    result = invoke("train", train_file, "--out", out)
    assert result.exit_code == 1
    assert f"{outcome}: simulated" in result.output
    assert json.loads(out.read_text())["outcome"] == outcome


def test_train_refuses_a_space_with_distributions(train_file, tmp_path):
    result = invoke("train", train_file, "--set", "architecture.block.activation={choice: [silu, gelu]}")
    assert result.exit_code == 2
    assert f"{train_file}: has distributions" in result.output


def test_train_reports_invalid_fields_as_path_lines(train_file, tmp_path):
    out = tmp_path / "m.json"
    result = invoke("train", train_file, "--out", out, "--set", "architecture.block.norm.groups=3",
                    "--set", "train.lr=-1")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert any(line.startswith("train.lr: Input should be greater than 0") for line in lines), lines
    assert any(line.startswith("architecture.block.norm.groups: 3 does not divide") for line in lines), lines
    assert "Traceback" not in result.output and not out.exists()


def test_sample_a_missing_or_foreign_checkpoint_is_exit_2(tmp_path):
    result = invoke("sample", tmp_path / "nope.pt")
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint")
    result = invoke("sample", foreign)
    assert result.exit_code == 2 and result.output.startswith("checkpoint: ")


# --------------------------------------------------------------------------- the library under the commands


def test_train_fixed_reads_the_data_first_and_names_only_the_files_it_wrote(train_file, tmp_path):
    from archsearch.samples import sample_checkpoint
    from archsearch.schema.space import load_space
    from archsearch.schema.train import SampleConfig
    from archsearch.trial import train_fixed

    events = []
    out, checkpoint, samples = tmp_path / "m.json", tmp_path / "m.pt", tmp_path / "never" / "grid.png"
    run = train_fixed(load_space(train_file, {"train.steps": 2}), "cpu", metrics_path=out, checkpoint_path=checkpoint,
                      on_load=lambda lines: events.append(("data", lines[0])),
                      on_progress=lambda phase, step, total, loss=None: events.append(("progress", phase)))
    # The data is described before the first progress event, so a progress bar starts below it.
    assert events[0] == ("data", "digits: 1617 train + 180 val images, 1x8x8, 10 classes")
    assert events[1] == ("progress", "building") and ("data", events[0][1]) not in events[1:]
    assert run.ok and run.result.metrics.steps_trained == 2
    assert run.files == {"metrics": out, "checkpoint": checkpoint}  # in the order the command prints them
    assert json.loads(out.read_text())["steps_trained"] == 2

    cfg = SampleConfig(sampler={"kind": "ddim", "steps": 2}, rows=1, cols=2)
    grid = sample_checkpoint(checkpoint, samples, cfg, "cpu")
    assert grid == samples and Image.open(grid).size == (2 * 65 + 1, 1 * 65 + 1)


def test_train_fixed_writes_the_metrics_of_a_failed_run_but_no_checkpoint(train_file, tmp_path, monkeypatch):
    from archsearch.schema.space import load_space
    from archsearch.trial import train_fixed

    monkeypatch.setattr(trial_module, "run_trial", lambda *args, **kwargs: TrialResult(
        "diverged", "diverged: simulated", TrialMetrics(outcome="diverged", device="cpu")))
    out, checkpoint = tmp_path / "m.json", tmp_path / "m.pt"
    run = train_fixed(load_space(train_file), "cpu", metrics_path=out, checkpoint_path=checkpoint)
    assert not run.ok and run.result.reason == "diverged: simulated"
    assert run.files == {"metrics": out} and json.loads(out.read_text())["outcome"] == "diverged"


def test_train_fixed_refuses_distributions_at_the_source_it_is_given(train_file):
    from archsearch.errors import ConfigErrors
    from archsearch.schema.space import load_space
    from archsearch.trial import train_fixed

    space = load_space(train_file, {"train.lr": {"float": [1e-4, 1e-3]}})
    with pytest.raises(ConfigErrors) as caught:
        train_fixed(space, "cpu", source="spaces/one.yaml",
                    on_load=lambda lines: pytest.fail("read the data of a space it refuses"))
    [error] = caught.value.errors
    assert error.path == "spaces/one.yaml" and error.message.startswith("has distributions")


def test_sample_checkpoint_names_a_missing_checkpoint(tmp_path):
    from archsearch.errors import ConfigErrors
    from archsearch.samples import sample_checkpoint
    from archsearch.schema.train import SampleConfig

    with pytest.raises(ConfigErrors) as caught:
        sample_checkpoint(tmp_path / "nope.pt", tmp_path / "grid.png", SampleConfig(), "cpu")
    assert caught.value.lines() == [f"{tmp_path / 'nope.pt'}: no such checkpoint"]
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.slow
def test_the_shipped_train_file_learns(tmp_path):
    """`archsearch train search_spaces/train_digits.yaml` as the README runs it (about 30 s)."""
    out = tmp_path / "m.json"
    path = Path(__file__).parent.parent / "search_spaces" / "train_digits.yaml"
    result = invoke("train", path, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["val_loss"] < 0.2  # untrained: about 1.0
    assert metrics["learning_curve"][0][1] > metrics["val_loss"]
