"""`archsearch export`: which network, the archsearch target, bad input, and folders that appear
whole or not at all. None of these needs diffusers (test_export.py has the ones that do)."""

from __future__ import annotations

import os
import re

import pytest
import torch
import yaml
from export_study import BASE, make_export_study, save_random_checkpoint, trial_config
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.nn import build_unet
from archsearch.train import load_checkpoint

runner = CliRunner()


def export(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def outputs(model, config):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, config.in_channels, config.image_size, config.image_size, generator=g)
    with torch.no_grad():
        return model.eval()(x, torch.tensor([3, 700]))


def test_the_knee_exports_as_an_archsearch_folder_that_build_unet_loads(tmp_path, monkeypatch):
    study = make_export_study(tmp_path / "study")
    monkeypatch.chdir(tmp_path)
    result = export("study", "out", "--trial", "knee", "--to", "archsearch")
    assert result.exit_code == 0, result.output
    assert "trial 0 (the knee) of study: weights from study/trials/0/checkpoint.pt" in result.output
    assert sorted(os.listdir("out")) == ["README.md", "checkpoint.pt", "config.yaml"]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert len(readme.splitlines()) <= 12 and "checkpoint format" in readme
    namespace: dict = {}
    exec(re.search(r"```python\n(.*?)```", readme, re.S).group(1), namespace)  # noqa: S102 - the README it wrote
    config = trial_config(0)
    expected = build_unet(config)
    expected.load_state_dict(load_checkpoint(study / "trials" / "0" / "checkpoint.pt")["state_dict"])
    assert torch.equal(outputs(namespace["model"], config), outputs(expected, config))
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text()) == config.model_dump(mode="json")


def test_a_trial_without_weights_exports_its_config_and_says_so(tmp_path):
    study = make_export_study(tmp_path / "study", with_checkpoint=False)
    result = export(study, tmp_path / "out", "--trial", "2", "--to", "archsearch")
    assert result.exit_code == 0, result.output
    assert "no trained weights: the config only" in result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["README.md", "config.yaml"]
    written = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert written == trial_config(2).model_dump(mode="json")


def test_a_config_file_and_a_checkpoint_export_too(tmp_path):
    config_file = tmp_path / "unet.yaml"
    config_file.write_text(yaml.safe_dump(BASE))
    assert export(config_file, tmp_path / "a", "--to", "archsearch").exit_code == 0
    assert sorted(os.listdir(tmp_path / "a")) == ["README.md", "config.yaml"]
    checkpoint = save_random_checkpoint(tmp_path / "m.pt", trial_config(0))
    assert export(checkpoint, tmp_path / "b", "--to", "archsearch").exit_code == 0
    assert (tmp_path / "b" / "checkpoint.pt").read_bytes() == checkpoint.read_bytes()


def test_add_skips_exit_2_with_the_field_and_write_nothing(tmp_path):
    study = make_export_study(tmp_path / "study")
    result = export(study, tmp_path / "out", "--trial", "1", "--to", "diffusers")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["architecture.skip.combine: add: diffusers' up blocks concatenate their skips"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["{study}", "{out}"], "--trial: {study} is a study folder: name a trial number or `knee`"),
    (["{study}", "{out}", "--trial", "7"], "--trial: 7: no such trial in the study (its trials: 0 to 2)"),
    (["{study}", "{out}", "--trial", "best"], "--trial: 'best' is neither a trial number nor `knee`"),
    (["{study}", "{out}", "--trial", "0", "--to", "onnx"], "--to: 'onnx' is not one of diffusers, archsearch"),
    (["{study}/space.yaml", "{out}", "--trial", "0"], "--trial: {study}/space.yaml is a file, not a study folder; drop --trial"),
    (["{study}/nothing.yaml", "{out}"], "{study}/nothing.yaml: no such file (give a study folder, a U-Net config or a checkpoint)"),
])
def test_bad_input_exits_2(tmp_path, args, message):
    study = make_export_study(tmp_path / "study", with_checkpoint=False)
    (study / "space.yaml").write_text("{}")
    fill = {"study": study, "out": tmp_path / "out"}
    result = export(*[a.format(**fill) for a in args])
    assert result.exit_code == 2
    assert result.stderr.strip() == message.format(**fill)
    assert not (tmp_path / "out").exists()


def test_the_knee_of_a_study_without_completed_trials_exits_2(tmp_path):
    import optuna

    from archsearch.search.storage import open_storage

    (tmp_path / "empty").mkdir()
    optuna.create_study(study_name="empty", storage=open_storage(None, tmp_path / "empty"), directions=["minimize"])
    result = export(tmp_path / "empty", tmp_path / "out", "--trial", "knee")
    assert result.exit_code == 2 and "no completed feasible trial yet" in result.stderr


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path):
    study = make_export_study(tmp_path / "study")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = export(study, out, "--trial", "0", "--to", "archsearch")
    assert result.exit_code == 2 and "exists and is not empty" in result.stderr
    assert os.listdir(out) == ["mine.txt"]
    assert export(study, out, "--trial", "0", "--to", "archsearch", "--overwrite").exit_code == 0
    assert sorted(os.listdir(out)) == ["README.md", "checkpoint.pt", "config.yaml"]


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    study = make_export_study(tmp_path / "study")
    out = tmp_path / "exports" / "out"

    def broken_copy(*args, **kwargs):
        (out.parent / "partial").mkdir(exist_ok=True)  # nothing may rely on the temp folder's name
        raise OSError("disk full")

    monkeypatch.setattr("archsearch.export.targets.shutil.copyfile", broken_copy)
    result = export(study, out, "--trial", "0", "--to", "archsearch")
    assert result.exit_code == 1 and "disk full" in result.stderr
    assert sorted(os.listdir(out.parent)) == ["partial"]  # no out/, no temporary folder
