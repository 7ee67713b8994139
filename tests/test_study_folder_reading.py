"""Every command that reads a study folder reads it the same way (archsearch.search.study_files).

Each file of a small study folder is damaged in several ways (not YAML, a schema it breaks,
cut short, binary bytes, empty, a folder in its place, ...) and every command that reads that
file is run on it: exit 2, one line that names the file (and the line and column of a YAML
error), no traceback.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.schema.loading import unet_config_from_dict

from export_study import save_random_checkpoint
from test_cli_retrain import ARCH, make_study

runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A study folder as `archsearch run` leaves one: space.yaml, the journal, trials/<n>/ with
    config.yaml and (trial 0) a real checkpoint."""
    study = make_study(tmp_path_factory.mktemp("pristine") / "tiny")
    save_random_checkpoint(study / "trials" / "0" / "checkpoint.pt", unet_config_from_dict(ARCH))
    return study


@pytest.fixture
def study(pristine, tmp_path) -> Path:
    copy = tmp_path / "tiny"
    shutil.copytree(pristine, copy)
    return copy


# --------------------------------------------------------------------------- ways to damage a file

def _replace(path: Path, data: bytes) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.write_bytes(data)


def _folder(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()
    (path / "inside").write_text("x")


def _cut(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


YAML_DAMAGE = {  # name: (damage, the words of its message; "line" for a YAML error)
    "not-yaml": (lambda p: _replace(p, b"study: [a, b\n  data: {\n"), "line 2, column"),
    "a-list": (lambda p: _replace(p, b"- 1\n- 2\n"), "line 1: expected a mapping"),
    "binary": (lambda p: _replace(p, bytes(range(256)) * 4), "not UTF-8 text"),
    "empty": (lambda p: _replace(p, b""), "the file is empty"),
    "a-folder": (_folder, "folder"),
    "cut-short": (lambda p: _replace(p, p.read_bytes()[:-40] + b"{x: [1, 2"), "invalid YAML at line"),
}
SPACE_SCHEMA = {
    "wrong-schema": (lambda p: _replace(p, b"data: 5\neval: {num_images: lots}\n"), "is not a valid space file: data"),
    "unknown-field": (lambda p: _replace(p, p.read_bytes() + b"colour: blue\n"), "is not a valid space file: colour"),
}
CONFIG_SCHEMA = {
    "wrong-schema": (lambda p: _replace(p, b"levels: 5\n"), "levels: "),
}
JOURNAL_DAMAGE = {
    "binary": (lambda p: _replace(p, bytes(range(256)) * 4 + b"\n"), "line 1 is not a journal record"),
    "garbage-line": (lambda p: _replace(p, b"\n".join(p.read_bytes().split(b"\n")[:3] + [b"\x00\xff{garbage"]
                                                     + p.read_bytes().split(b"\n")[3:])),
                     "line 4 is not a journal record"),
    "not-a-record": (lambda p: _replace(p, b"\n".join(p.read_bytes().split(b"\n")[:2] + [b"[1, 2, 3]"]
                                                      + p.read_bytes().split(b"\n")[2:])),
                     "line 3 is not a journal record (JSON without an op_code)"),
    "record-lacks-a-field": (lambda p: _replace(p, b'{"op_code": 0, "study_name": "tiny"}\n'),
                             "holds records that Optuna cannot replay"),
    "empty": (lambda p: _replace(p, b""), "holds no record"),
    "a-folder": (_folder, "is a folder, not the study's journal file"),
}

COMMANDS = {  # what reads which file: (command line, as a function of the study folder)
    "report": lambda s: ["report", s, "--no-samples"],
    "results": lambda s: ["results", s],
    "verify": lambda s: ["verify", s, "--steps", "20", "--rounds", "0", "--device", "cpu"],
    "train --trial": lambda s: ["train", s, "--trial", "0", "--steps", "2", "--device", "cpu"],
    "train config.yaml": lambda s: ["train", s / "trials" / "0" / "config.yaml", "--steps", "2", "--device", "cpu"],
    "export --trial": lambda s: ["export", s, s.parent / "out", "--trial", "0", "--to", "archsearch"],
    "export config.yaml": lambda s: ["export", s / "trials" / "0" / "config.yaml", s.parent / "out", "--to",
                                     "archsearch"],
}
READERS = {
    "space.yaml": ["report", "verify", "train --trial", "train config.yaml"],
    "optuna.journal": ["report", "results", "verify", "train --trial", "train config.yaml", "export --trial"],
    "trials/0/config.yaml": ["train config.yaml", "export config.yaml"],
}
DAMAGE = {
    "space.yaml": {**YAML_DAMAGE, **SPACE_SCHEMA},
    "optuna.journal": JOURNAL_DAMAGE,
    "trials/0/config.yaml": {**YAML_DAMAGE, **CONFIG_SCHEMA},
}
# `export PATH` takes a folder for a study folder before it looks inside (the CLI's own rule: it
# asks for --trial), so a folder in place of a config file it is given is not this reader's case.
CASES = [(file, damage, command) for file, readers in READERS.items() for damage in DAMAGE[file]
         for command in readers if (damage, command) != ("a-folder", "export config.yaml")]


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if "journal" not in p.name}


@pytest.mark.parametrize("file,damage,command", CASES, ids=[f"{f}-{d}-{c}" for f, d, c in CASES])
def test_a_damaged_file_is_one_line_naming_it_for_every_command(study, file, damage, command, monkeypatch):
    monkeypatch.chdir(study.parent)
    path = study / file
    how, words = DAMAGE[file][damage]
    how(path)
    before = snapshot(study.parent)
    result = runner.invoke(app, [str(a) for a in COMMANDS[command](study)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"{path}: ") or lines[0].startswith(f"{os.path.relpath(path)}: "), lines[0]
    assert words in lines[0], lines[0]
    assert snapshot(study.parent) == before  # a refused command writes nothing


@pytest.mark.parametrize("damage", list(JOURNAL_DAMAGE))
def test_ablate_report_only_reads_its_journal_the_same_way(tmp_path, damage):
    spec = {"study": {"name": "abl", "device": "cpu"}, "data": {"image_size": 8},
            "train": {"steps": 2, "batch_size": 4}, "eval": {"num_images": 8, "timesteps": 4, "buckets": 2},
            "base": ARCH, "variants": {"narrow": {"embedding": {"dim": 4}}}, "seeds": 1}
    (tmp_path / "abl.yaml").write_text(yaml.safe_dump(spec))
    journal = tmp_path / "results" / "abl" / "optuna.journal"
    journal.parent.mkdir(parents=True)
    attrs = [b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"kind":"ablation","n":%d}}' % i for i in range(4)]
    journal.write_bytes(b"\n".join([b'{"op_code":0,"worker_id":"w","study_name":"abl","directions":[1,2]}', *attrs])
                        + b"\n")
    how, words = JOURNAL_DAMAGE[damage]
    how(journal)
    result = runner.invoke(app, ["ablate", str(tmp_path / "abl.yaml"), "--results-dir", str(tmp_path / "results"),
                                 "--report-only"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"{journal}: ") and words in lines[0], lines[0]


def test_an_intact_folder_still_reads(study):
    """The reader refuses damage, not the folder: the same commands answer on the pristine copy."""
    assert runner.invoke(app, ["results", str(study)]).exit_code == 0
    result = runner.invoke(app, ["export", str(study), str(study.parent / "out"), "--trial", "0", "--to",
                                 "archsearch"])
    assert result.exit_code == 0, result.output


def test_a_torn_last_journal_record_is_not_damage(study):
    """A record cut short by a killed writer is set aside when the journal is opened (as before)."""
    from archsearch.search.storage import StorageWarning

    journal = study / "optuna.journal"
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "worker_id": "w", "trial_')
    with pytest.warns(StorageWarning, match="torn last record"):
        result = runner.invoke(app, ["results", str(study)])
    assert result.exit_code == 0, result.output
