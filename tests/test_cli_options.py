"""Bad command-line options are exit 2 with `--option: message`, found before anything is written;
an unreachable storage is exit 1, also with nothing written and no password shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app

runner = CliRunner()
SPACE = {"study": {"name": "opts", "trials": 1}, "data": {"max_images": 64}, "train": {"steps": 2, "batch_size": 8},
         "eval": {"num_images": 8, "timesteps": 5, "timesteps_per_image": 1, "buckets": 1, "curve_points": 0},
         "architecture": {"levels": [{"width": 8, "blocks": 1}], "block": {"norm": {"groups": 4}},
                          "middle": {"blocks": 1, "attention": False}}}


@pytest.fixture
def space_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "opts.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("args,where", [
    (["--trials", "0"], "--trials:"),
    (["--trials", "-1"], "--trials:"),
    (["--workers", "0"], "--workers:"),
    (["--device", "bogus"], "--device:"),
    (["--gpus", "zero,one"], "--gpus:"),
    (["--storage", "not a url"], "--storage:"),
    (["--storage", "postgresql+nodriver://u:hunter2@127.0.0.1/x"], "--storage:"),
    (["--storage", "postgresql+psycopg://u:p@ss@127.0.0.1:1/x"], "--storage:"),
    (["--results-dir", "a_file"], "--results-dir:"),
    (["--results-dir", "a_file/below"], "--results-dir:"),
])
def test_bad_options_are_exit_2_and_write_nothing(space_file, tmp_path, args, where):
    (tmp_path / "a_file").write_text("not a folder\n")
    before = files_under(tmp_path)
    result = runner.invoke(app, ["run", str(space_file), *args] + ([] if "--results-dir" in args else ["--results-dir", "results"]))
    assert result.exit_code == 2, result.output
    assert result.output.startswith(where), result.output
    assert "hunter2" not in result.output and "ss@" not in result.output
    assert files_under(tmp_path) == before


def test_a_study_folder_name_taken_by_a_file(space_file, tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "opts").write_text("a file where the study folder would go\n")
    result = runner.invoke(app, ["run", str(space_file), "--results-dir", "results"])
    assert result.exit_code == 2 and result.output.startswith("study.name:"), result.output


def test_an_unreachable_storage_is_exit_1_with_nothing_written(space_file, tmp_path):
    before = files_under(tmp_path)
    url = "postgresql+psycopg://archsearch:hunter2@127.0.0.1:1/nothing"  # nothing listens on port 1
    result = runner.invoke(app, ["run", str(space_file), "--results-dir", "results", "--storage", url])
    assert result.exit_code == 1, result.output
    assert "cannot open storage" in result.output and "hunter2" not in result.output and "***" in result.output
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("count", ["-1", "100000000"])
def test_build_samples_a_bounded_number_of_networks(count):
    result = runner.invoke(app, ["build", str(Path(__file__).parents[1] / "search_spaces" / "quickstart.yaml"), "--sample", count])
    assert result.exit_code == 2 and result.output.startswith("--sample:"), result.output
