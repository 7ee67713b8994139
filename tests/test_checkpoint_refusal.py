"""A file that is not an archsearch checkpoint (or training state) is refused in one line.

Every place that loads a file with torch (archsearch.train.load_checkpoint: `sample`, `export`,
the report's sample grids; archsearch.train_state.load_state: `train --resume`) reads it with
`weights_only=True` and says, in one line naming the file, that it is not an archsearch checkpoint
or that it was refused as unsafe: never torch's six lines, its advice to turn safe loading off,
nor "Please file an issue". A pickle that would run code does not run it.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.errors import ConfigError
from archsearch.train import load_checkpoint
from archsearch.train_state import STATE_FORMAT, load_state

from export_study import make_export_study, save_random_checkpoint, trial_config

runner = CliRunner()
MARKER = "pwned"  # what the hostile pickles would create, beside themselves


class Hostile:
    """Pickles as a call of os.system: loading it with pickle would create MARKER."""

    def __init__(self, folder: Path):
        self.command = f"touch {folder / MARKER}"

    def __reduce__(self):
        return (os.system, (self.command,))


def real_checkpoint(path: Path) -> Path:
    return save_random_checkpoint(path, trial_config(0))


def _zip_not_torch(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "a zip, but not torch's")


def _cut(path: Path) -> None:
    real_checkpoint(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _pickle(path: Path, protocol: int) -> None:
    path.write_bytes(pickle.dumps({"state_dict": Hostile(path.parent)}, protocol=protocol))


def _torch_hostile(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"format": "archsearch-checkpoint-v1", "config": Hostile(path.parent)}, path)


BAD = {  # name: (how to write it, the words of its refusal)
    "random-bytes": (lambda p: p.write_bytes(os.urandom(4096)), "is not a readable checkpoint"),
    "text": (lambda p: p.write_text("hello, I am a checkpoint\n"), "is not a readable checkpoint"),
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "zip-not-torch": (_zip_not_torch, "a zip archive, but not one torch.save wrote"),
    "hostile-pickle-0": (lambda p: _pickle(p, 0), "was refused as unsafe: loading it would run posix.system"),
    "hostile-pickle-2": (lambda p: _pickle(p, 2), "was refused as unsafe: loading it would run posix.system"),
    "hostile-pickle-5": (lambda p: _pickle(p, 5), "was refused as unsafe: loading it would run posix.system"),
    "hostile-torch-save": (_torch_hostile, "was refused as unsafe: loading it would run posix.system"),
    "plain-dict": (lambda p: torch.save({"weights": torch.zeros(3)}, p), "is not an archsearch checkpoint"),
    "marker-but-no-weights": (lambda p: torch.save({"format": "archsearch-checkpoint-v1", "config": {}}, p),
                              "is a damaged archsearch checkpoint"),
    "truncated": (_cut, "truncated or damaged"),
}
TORCH_WORDS = ("weights_only", "Please file an issue", "Traceback", "WeightsUnpickler", "pytorch.org")


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert not any(words in text for words in TORCH_WORDS), text
    return lines[0]


def refused(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "model.pt"
    BAD[name][0](path)
    return path


@pytest.mark.parametrize("name", BAD)
def test_load_checkpoint_refuses_in_one_line(tmp_path, name):
    path = refused(tmp_path, name)
    with pytest.raises(ConfigError) as caught:
        load_checkpoint(path)
    line = one_line(str(caught.value))
    assert str(path) in line and BAD[name][1] in line, line
    assert not (tmp_path / MARKER).exists()  # nothing ran


@pytest.mark.parametrize("name", [n for n in BAD if n not in ("plain-dict", "marker-but-no-weights")])
def test_load_state_refuses_in_one_line(tmp_path, name):
    path = refused(tmp_path, name)
    with pytest.raises(ConfigError) as caught:
        load_state(path)
    line = one_line(str(caught.value))
    assert line.startswith(f"{path}: ") and line.endswith("delete it to start over"), line
    words = BAD[name][1].replace("is not a readable checkpoint", "is not a readable training state")
    assert words in line, line
    assert not (tmp_path / MARKER).exists()


def test_a_folder_in_place_of_the_file(tmp_path):
    (tmp_path / "model.pt").mkdir()
    with pytest.raises(ConfigError, match="cannot be read as a checkpoint .it is a folder"):
        load_checkpoint(tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="cannot be read as a training state .it is a folder"):
        load_state(tmp_path / "model.pt")


def test_real_files_still_load(tmp_path):
    assert load_checkpoint(real_checkpoint(tmp_path / "ok.pt"))["format"] == "archsearch-checkpoint-v1"
    torch.save({"format": STATE_FORMAT, "position": {"step": 3}}, tmp_path / "state.pt")
    assert load_state(tmp_path / "state.pt")["position"]["step"] == 3


# --------------------------------------------------------------------------- through the commands

@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("command", ["sample", "export", "export --trial"])
def test_every_command_that_loads_a_checkpoint_says_so_in_one_line(tmp_path, name, command):
    study = make_export_study(tmp_path / "study", with_checkpoint=False)
    path = study / "trials" / "0" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    BAD[name][0](path)
    args = {"sample": ["sample", str(path), "--out", str(tmp_path / "grid.png"), "--steps", "2", "--device", "cpu"],
            "export": ["export", str(path), str(tmp_path / "out"), "--to", "archsearch"],
            "export --trial": ["export", str(study), str(tmp_path / "out"), "--trial", "0", "--to", "archsearch"]}
    result = runner.invoke(app, args[command])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert str(path) in line and BAD[name][1] in line, line
    assert not (tmp_path / MARKER).exists() and not (study / "trials" / "0" / MARKER).exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "grid.png").exists()


def test_the_report_records_a_refused_checkpoint_on_its_grid(tmp_path):
    """The report goes on without a front member's grid, and says why in one line."""
    from archsearch.report.build import make_report

    from test_report_cli import make_study

    study = make_study(tmp_path / "tiny", "tiny")
    config = yaml.safe_load((study / "space.yaml").read_text())
    config["study"]["checkpoints"] = "front"
    (study / "space.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for number in (0, 1, 3, 5):  # the front
        path = study / "trials" / str(number) / "checkpoint.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        _pickle(path, 2)
    _, files = make_report([study], importances=False)
    grids = files.samples["tiny"].grids
    assert grids and all(g.status == "failed" and "was refused as unsafe" in g.reason for g in grids)
    assert not any(words in g.reason for g in grids for words in TORCH_WORDS)
    assert not list(study.rglob(MARKER))


def test_train_resume_refuses_a_damaged_state(tmp_path):
    from test_cli_retrain import ARCH, SECTIONS, TRAIN

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"study": {"name": "s", "device": "cpu"}, **SECTIONS, "train": TRAIN,
                                     "architecture": ARCH}))
    (tmp_path / "run").mkdir()
    _pickle(tmp_path / "run" / "state.pt", 2)
    result = runner.invoke(app, ["train", str(space), "--device", "cpu", "--out-dir", str(tmp_path / "run"),
                                 "--resume"])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"{tmp_path / 'run' / 'state.pt'}: was refused as unsafe"), result.output
    assert not any(words in result.output for words in TORCH_WORDS) and not (tmp_path / "run" / MARKER).exists()
