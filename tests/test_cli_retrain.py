"""`archsearch train` as a real, resumable run: the three sources (a space file, a U-Net config,
a study's trial), where its files go, evaluations at intervals, and Ctrl-C then `--resume`
ending exactly where one run straight through ends."""

import json
import os
import shlex
import signal
import warnings
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

import archsearch.trial as trial_module
from archsearch.cli import app
from archsearch.schema.loading import unet_config_from_dict
from archsearch.schema.train import TrainConfig

runner = CliRunner()

ARCH = {
    "image_size": 8, "in_channels": 1,
    "levels": [{"width": 8, "blocks": 1}, {"width": 8, "blocks": 1, "attention": True}],
    "block": {"norm": {"groups": 4}}, "middle": {"blocks": 1, "attention": False},
    "attention": {"head_channels": 8}, "embedding": {"dim": 8},
}
# Timing kept to the least (no reference network, no inference or latency timing): these tests are about training.
SECTIONS = {
    "data": {"source": "digits", "image_size": 8},
    "eval": {"num_images": 16, "timesteps": 5, "curve_points": 3},
    "measure": {"warmup_steps": 0, "repeats": 3, "infer": False, "latency": False, "flops": False, "reference": None},
}
TRAIN = {"steps": 6, "batch_size": 8, "warmup_steps": 2, "log_every": 2, "ema_decay": 0.9, "lr": 2e-3}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def trained(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", weights_only=True)


# --------------------------------------------------------------------------- Ctrl-C, then --resume


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A space file trained 6 steps straight through (`straight/`), and the same run sent a real
    SIGINT at step 3 (`cut/`): what the command printed and its exit code."""
    root = tmp_path_factory.mktemp("resume")
    space = write_yaml(root / "one.yaml", {"study": {"name": "one"}, **SECTIONS, "train": TRAIN, "architecture": ARCH})
    common = [space, "--device", "cpu", "--eval-every", 2, "--save-every", 2]
    straight = invoke("train", *common, "--out-dir", root / "straight")
    assert straight.exit_code == 0, straight.output

    real_train = trial_module.train

    def interrupted_at_3(*args, on_progress, **kwargs):
        def progress(phase, step, total, loss=None):
            if phase == "training" and step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the terminal sends it
            on_progress(phase, step, total, loss)
        return real_train(*args, on_progress=progress, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trial_module, "train", interrupted_at_3)
        cut = invoke("train", *common, "--out-dir", root / "cut")
    return root, space, straight, cut


def test_ctrl_c_saves_the_state_prints_the_resume_command_and_exits_130(runs):
    root, space, _, cut = runs
    assert cut.exit_code == 130
    state = root / "cut" / "state.pt"
    assert f"interrupted at step 3 of 6; the training state saved at step 3 is in {state}" in cut.stderr
    command = cut.stderr.strip().splitlines()[-1].strip()
    assert command == shlex.join(["archsearch", "train", str(space), "--out-dir", str(root / "cut"), "--eval-every",
                                  "2", "--save-every", "2", "--device", "cpu", "--resume"])
    assert torch.load(state, weights_only=True)["position"]["step"] == 3
    assert not (root / "cut" / "checkpoint.pt").exists()


def test_resume_is_refused_for_another_config_naming_what_differs(runs, tmp_path):
    root, space, _, _ = runs
    import shutil

    copy = shutil.copytree(root / "cut", tmp_path / "cut")
    result = invoke("train", space, "--device", "cpu", "--out-dir", copy, "--resume",
                    "--set", "architecture.levels.0.width=16", "--set", "train.lr=0.001")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "architecture.levels.0.width: 16 now, but the saved state was trained with 8" in lines
    assert "train.lr: 0.001 now, but the saved state was trained with 0.002" in lines
    assert lines[-1].startswith(f"--resume: {copy / 'state.pt'} belongs to another run")
    assert (copy / "state.pt").exists() and not (copy / "metrics.json").exists()

    again = invoke("train", space, "--device", "cpu", "--out-dir", copy)  # without --resume: not silently over it
    assert again.exit_code == 2 and f"{copy / 'state.pt'}: holds the state of an unfinished run" in again.stderr


def test_the_resumed_run_ends_with_the_weights_and_curves_of_the_straight_run(runs):
    root, _, straight, cut = runs
    command = shlex.split(cut.stderr.strip().splitlines()[-1])[1:]  # what the user is told to run
    resumed = invoke(*command)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from step 3" in resumed.output
    a, b = trained(root / "straight"), trained(root / "cut")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    ma, mb = (json.loads((root / name / "metrics.json").read_text()) for name in ("straight", "cut"))
    assert mb["learning_curve"] == ma["learning_curve"] and [s for s, _ in ma["learning_curve"]] == [2, 4, 6]
    assert mb["train_loss_curve"] == ma["train_loss_curve"] and mb["val_loss"] == ma["val_loss"]
    assert not (root / "cut" / "state.pt").exists()  # the run ended: nothing left to resume
    assert "step 2/6  val_loss" in straight.output  # each evaluation as a line


def test_resume_with_nothing_to_resume_says_so(runs, tmp_path):
    root, space, _, _ = runs
    result = invoke("train", space, "--out-dir", root / "straight", "--resume")
    assert result.exit_code == 2
    assert "--resume: there is no saved state to resume" in result.stderr and "the run there has ended" in result.stderr
    result = invoke("train", space, "--resume")
    assert result.exit_code == 2 and "--resume: needs --out-dir" in result.stderr


def test_sigterm_before_training_stops_at_once_and_exits_143(runs, tmp_path, monkeypatch):
    root, space, _, _ = runs
    real_measure = trial_module.measure

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the cost is measured: no step to wait for
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(trial_module, "measure", terminated)
    result = invoke("train", space, "--device", "cpu", "--out-dir", tmp_path / "run")
    assert result.exit_code == 143
    assert "interrupted before training; nothing was saved to resume from" in result.stderr
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


# --------------------------------------------------------------------------- a study's trial


# (val_loss, throughput): none dominates another; the knee is trial 0 (as in tests/export_study.py).
POINTS = [(0.2, 500.0), (0.3, 900.0), (0.1, 100.0)]


def make_study(folder: Path) -> Path:
    """A study folder as `archsearch run` leaves one: space.yaml (its lr searched), and three
    trials recording their config and own training settings (trial i: lr (i+1)e-3, 100 seconds)."""
    from archsearch.search.storage import open_storage

    folder.mkdir(parents=True)
    write_yaml(folder / "space.yaml", {"study": {"name": folder.name, "device": "cpu"}, **SECTIONS,
                                       "train": {**TRAIN, "lr": {"float": [1e-4, 1e-2]}}, "architecture": ARCH})
    objectives = [{"metric": "val_loss", "direction": "minimize"}, {"metric": "train_throughput", "direction": "maximize"}]
    study = optuna.create_study(study_name=folder.name, storage=open_storage(None, folder),
                                directions=[o["direction"] for o in objectives])
    study.set_user_attr("objectives", objectives)
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)}
    for number, (loss, speed) in enumerate(POINTS):
        train = TrainConfig(**{**TRAIN, "lr": (number + 1) * 1e-3, "seconds": 100.0}).model_dump(mode="json")
        attrs = {"config": unet_config_from_dict(ARCH).model_dump(mode="json"), "train": train, "val_loss": loss,
                 "train_throughput": speed}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.add_trial(optuna.trial.create_trial(params={"train.lr": train["lr"]}, distributions=dist,
                                                      values=[loss, speed], user_attrs=attrs))
        trial_dir = folder / "trials" / str(number)
        trial_dir.mkdir(parents=True)
        write_yaml(trial_dir / "config.yaml", attrs["config"])
        (trial_dir / "checkpoint.pt").write_bytes(b"the search's checkpoint of the trial")
    return folder


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("studies") / "tiny")


def test_the_knee_trains_with_its_own_settings_into_its_trial_folder(study):
    result = invoke("train", study, "--trial", "knee", "--steps", 4, "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = study / "trials" / "0" / "train-4"
    assert f"trial 0 (the knee) of {study}: 4 steps, into {out}/" in result.stderr
    ckpt = trained(out)
    assert ckpt["format"] == "archsearch-checkpoint-v1"
    assert ckpt["train"]["lr"] == 1e-3 and ckpt["train"]["steps"] == 4  # trial 0's own lr, not the space's range
    assert ckpt["train"]["seconds"] is None  # --steps replaced the budget
    assert json.loads((out / "metrics.json").read_text())["steps_trained"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json"]
    assert (study / "trials" / "0" / "checkpoint.pt").read_bytes() == b"the search's checkpoint of the trial"


def test_a_trials_config_file_trains_under_its_study(study):
    config = study / "trials" / "1" / "config.yaml"
    result = invoke("train", config, "--steps", 2, "--device", "cpu", "--eval-every", 0)
    assert result.exit_code == 0, result.output
    ckpt = trained(study / "trials" / "1" / "train-2")
    assert ckpt["train"]["lr"] == 2e-3  # trial 1's
    assert ckpt["config"] == yaml.safe_load(config.read_text())


def test_the_trials_own_files_are_never_written(study):
    own = study / "trials" / "0" / "checkpoint.pt"
    result = invoke("train", study, "--trial", "0", "--steps", 2, "--checkpoint", own)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"--checkpoint: {own} is trial 0's own file")
    result = invoke("train", study, "--trial", "0", "--steps", 2, "--out-dir", study / "trials" / "0")
    assert result.exit_code == 2 and "--out-dir: " in result.stderr
    assert own.read_bytes() == b"the search's checkpoint of the trial"


# --------------------------------------------------------------------------- a bare U-Net config


def test_a_bare_config_trains_under_a_space_file(study, tmp_path):
    config = write_yaml(tmp_path / "unet.yaml", ARCH)
    space = write_yaml(tmp_path / "space.yaml", {**SECTIONS, "train": TRAIN})
    result = invoke("train", config, "--space", space, "--device", "cpu", "--steps", 2, "--eval-every", 0,
                    "--checkpoint", tmp_path / "c.pt")
    assert result.exit_code == 0, result.output
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ckpt["train"]["lr"] == 2e-3 and ckpt["config"]["levels"][0]["width"] == 8


def test_a_bare_config_without_a_space_asks_for_one(tmp_path):
    config = write_yaml(tmp_path / "unet.yaml", ARCH)
    result = invoke("train", config)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"{config}: is a U-Net config, which says nothing of the data, training and validation; pass --space "
        "SPACE_FILE to train it under a space file's (or give a study folder with --trial N)")


def test_a_searched_training_setting_is_refused_at_its_path(study, tmp_path):
    config = write_yaml(tmp_path / "unet.yaml", ARCH)
    result = invoke("train", config, "--space", study / "space.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"train.lr: is searched in --space {study / 'space.yaml'}")


@pytest.mark.parametrize("args,message", [
    (["{study}"], "--trial: {study} is a study folder: name a trial number or `knee`"),
    (["{study}/trials/0/config.yaml", "--trial", "0"], "--trial: {study}/trials/0/config.yaml is a file, not a study folder; drop --trial"),
    (["{study}", "--trial", "7"], "--trial: 7: no such trial in the study (its trials: 0 to 2)"),
    (["{study}", "--trial", "0", "--space", "{study}/space.yaml"], "--space: a study trial trains under its study's space.yaml"),
    (["{study}/space.yaml", "--space", "{study}/space.yaml"], "--space: {study}/space.yaml is a space file"),
])
def test_sources_named_wrongly_are_exit_2(study, args, message):
    result = invoke("train", *[a.format(study=study) for a in args])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message.format(study=study)), result.stderr
