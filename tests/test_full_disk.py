"""A full disk loses no result (archsearch.io.WriteFailed): a measured trial stays measured when
its checkpoint cannot be written; a trial's record that cannot be kept stops the run with one line,
and the same command resumes once there is room; every command that writes (run, train, report,
export, verify) says `no space left on device under <folder>` (or `disk quota exceeded`) and
leaves nothing half-written.

Most cases inject the fault (`Disk`: the atomic rename of chosen files fails with ENOSPC or
EDQUOT, as after a write that ran out of room); the last ones fill a real 2 MB tmpfs, where the
test may mount one (root), and skip saying why elsewhere.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from archsearch import run_study
from archsearch.cli import app
from archsearch.io import WriteFailed, WriteWarning, atomic_torch_save, atomic_write, write_failure
from archsearch.schema.space import space_from_dict
from archsearch.search.records import read_result
import archsearch.search.retry as retry_module
from test_study import DISTINCT, storage_trials, tiny

runner = CliRunner()
WORDS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
CODES = pytest.mark.parametrize("code", sorted(WORDS), ids=["ENOSPC", "EDQUOT"])


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(retry_module, "RETRY_DELAYS", (0.01,))


class Disk:
    """Fails the atomic rename of every file named in `full` (by file name) with `code`."""

    def __init__(self, monkeypatch):
        self.full: set[str] = set()
        self.code = errno.ENOSPC
        real = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name in self.full:
                raise OSError(self.code, os.strerror(self.code))
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)

    def fill(self, *names: str, code: int = errno.ENOSPC) -> None:
        self.full, self.code = set(names), code


@pytest.fixture
def disk(monkeypatch):
    return Disk(monkeypatch)


def leftovers(root: Path) -> list[str]:
    """Temporary files and folders a failed write left behind."""
    return [str(p) for p in root.rglob("*") if p.name.startswith(".") and (".tmp" in p.name or ".old" in p.name)]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result, words: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output, result.output
    return lines[0]


# --------------------------------------------------------------------------- telling a failure


@CODES
def test_every_way_a_library_words_a_full_disk_is_one_line_naming_the_folder(code):
    strerror = os.strerror(code)
    chained = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    chained.__context__ = OSError(code, strerror)  # torch, writing to a file object
    forms = [
        OSError(code, strerror),  # Python's own writes, pandas' csv, Pillow, matplotlib
        OSError(code, f"Error writing bytes to file. Detail: [errno {code}] {strerror}"),  # pyarrow
        RuntimeError(f"Error while serializing: I/O error: {strerror} (os error {code})"),  # safetensors (rust)
        chained,
        RuntimeError(f"something failed: {strerror}"),
    ]
    for exc in forms:
        failure = write_failure(exc, "/data/results/q/trials/3/checkpoint.pt")
        assert isinstance(failure, WriteFailed) and isinstance(failure, OSError) and failure.errno == code
        assert str(failure) == f"{WORDS[code]} under /data/results/q/trials/3"
        assert str(pickle.loads(pickle.dumps(failure))) == str(failure)  # as a worker process sends it


def test_an_error_of_the_writer_itself_is_not_taken_for_a_full_disk():
    for exc in (ValueError("bad value"), RuntimeError("unexpected pos 1 vs 2"), FileNotFoundError(errno.ENOENT, "x"),
                PermissionError(errno.EACCES, "Permission denied"), KeyError("state_dict")):
        assert write_failure(exc, "/tmp/x") is None


@CODES
def test_atomic_writes_raise_the_one_line_and_leave_no_temporary_file(tmp_path, code):
    target = tmp_path / "sub" / "file.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")

    def write(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(code, os.strerror(code))

    with pytest.raises(WriteFailed, match=f"^{WORDS[code]} under {target.parent}$"):
        atomic_write(target, write)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- a study


@CODES
def test_a_trial_whose_checkpoint_cannot_be_written_stays_complete_with_its_values(tmp_path, disk, code):
    disk.fill("checkpoint.pt", code=code)
    space = space_from_dict(tiny(study={"checkpoints": "all"}, **DISTINCT))
    with pytest.warns(WriteWarning, match=f"trial 0: checkpoint not written: {WORDS[code]} under "):
        summary = run_study(space, tmp_path)
    assert summary.trials == summary.completed == 2
    folder = tmp_path / "tiny"
    table = pd.read_csv(folder / "trials.csv")
    for trial, (_, row) in zip(storage_trials(folder), table.iterrows()):
        reason = f"checkpoint not written: {WORDS[code]} under {folder / 'trials' / str(trial.number)}"
        assert trial.state.name == "COMPLETE" and len(trial.values) == 2 and trial.user_attrs["val_loss"] > 0
        assert trial.user_attrs["missing_files"] == reason and row["missing_files"] == reason
        result = read_result(folder, trial.number)
        assert result["state"] == "COMPLETE" and result["missing_files"] == reason
        assert not (folder / "trials" / str(trial.number) / "checkpoint.pt").exists()
    assert leftovers(folder) == []
    disk.fill()
    assert invoke("report", folder).exit_code == 0
    assert f"it could not be written (checkpoint not written: {WORDS[code]} under" in (folder / "report.md").read_text()


def test_the_record_is_on_disk_before_the_checkpoint_is_written(tmp_path, monkeypatch):
    import archsearch.trial as trial_module

    seen = []
    real = trial_module.RunFiles.write

    def write(files):
        seen.append(read_result(tmp_path / "tiny", 0))  # what a worker dying now would leave
        return real(files)

    monkeypatch.setattr(trial_module.RunFiles, "write", write)
    run_study(space_from_dict(tiny(study={"checkpoints": "all", "trials": 1}, **DISTINCT)), tmp_path)
    assert seen[0]["state"] == "COMPLETE" and seen[0]["val_loss"] > 0
    assert (tmp_path / "tiny" / "trials" / "0" / "checkpoint.pt").exists()


def test_tables_that_cannot_be_written_are_a_warning_and_the_study_goes_on(tmp_path, disk):
    disk.fill("trials.csv", "trials.parquet")
    with pytest.warns(WriteWarning, match="trials.csv and trials.parquet .* not written: no space left on device"):
        summary = run_study(space_from_dict(tiny(**DISTINCT)), tmp_path)
    assert summary.trials == summary.completed == 2 and not (tmp_path / "tiny" / "trials.csv").exists()
    disk.fill()
    assert invoke("results", tmp_path / "tiny", "--format", "csv").exit_code == 0  # rewritten from the storage
    assert len(pd.read_csv(tmp_path / "tiny" / "trials.csv")) == 2


@CODES
def test_a_record_that_cannot_be_kept_stops_the_run_with_one_line_and_the_same_command_resumes(tmp_path, disk, code):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(tiny(**DISTINCT)))
    command = ("run", space_file, "--results-dir", tmp_path / "results")
    disk.fill("metrics.json", code=code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WriteWarning)
        result = invoke(*command)
    assert result.exit_code == 1
    folder = tmp_path / "results" / "tiny"
    assert one_error_line(result, WORDS[code]) == f"error: {WORDS[code]} under {folder / 'trials' / '0'}"
    (first,) = storage_trials(folder)  # told to the storage before the run stopped
    assert first.state.name == "COMPLETE" and first.user_attrs["val_loss"] > 0

    disk.fill()
    again = invoke(*command)
    assert again.exit_code == 0, again.output
    trials = storage_trials(folder)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].values == first.values  # kept, not trained again
    assert read_result(folder, 0)["values"] == first.values  # its file written at last
    assert leftovers(folder) == []


# --------------------------------------------------------------------------- the other writers


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    results = tmp_path_factory.mktemp("finished")
    space = tiny(study={"checkpoints": "all"}, architecture={"middle": {"blocks": 2}}, **DISTINCT)  # diffusers' middle
    run_study(space_from_dict(space), results)
    return results / "tiny"


@pytest.mark.parametrize("name", ["report.md", "report.html", "pareto.csv", "pareto.png"])
def test_report_on_a_full_disk_exits_1_with_the_line(finished, tmp_path, disk, name):
    out = tmp_path / "report"
    disk.fill(name)
    result = invoke("report", finished, "--out", out, "--no-samples")
    assert result.exit_code == 1
    one_error_line(result, "no space left on device under")
    assert not (out / name).exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("to", ["archsearch", "diffusers"])
def test_export_on_a_full_disk_writes_no_folder(finished, tmp_path, disk, to):
    if to == "diffusers":
        pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
    out = tmp_path / "out"
    disk.fill("out")
    silu = next(t.number for t in storage_trials(finished) if t.params["architecture.block.activation"] == "silu")
    result = invoke("export", finished, out, "--trial", silu, "--to", to)  # diffusers' SiLU
    assert result.exit_code == 1
    assert one_error_line(result, "no space left on device") == f"error: no space left on device under {tmp_path}"
    assert not out.exists() and leftovers(tmp_path) == []


def test_verify_on_a_full_disk_exits_1_and_keeps_its_retrains(tmp_path, disk):
    from test_verify_cli import make_source, verify_trials

    source = make_source(tmp_path / "tiny")
    disk.fill("verify.md")
    command = ("verify", source, "--factor", "2", "--dominated", "1", "--rounds", "0")
    result = invoke(*command)
    assert result.exit_code == 1
    one_error_line(result, "no space left on device under")
    assert [t.state.name for t in verify_trials(source)] == ["COMPLETE"] * 3  # the retrains are recorded
    disk.fill()
    assert invoke(*command).exit_code == 0 and (source / "verify.md").exists()
    assert len(verify_trials(source)) == 3  # nothing trained twice


# --------------------------------------------------------------------------- archsearch train


@pytest.fixture
def train_file(tmp_path):
    from test_cli_train import TRAIN_FILE

    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(TRAIN_FILE))
    return path


def test_train_keeps_its_metrics_and_state_when_the_checkpoint_cannot_be_written(train_file, tmp_path, disk):
    out = tmp_path / "run"
    disk.fill("checkpoint.pt")
    with pytest.warns(WriteWarning, match="checkpoint not written: no space left on device under"):
        result = invoke("train", train_file, "--out-dir", out, "--device", "cpu")
    assert result.exit_code == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["outcome"] == "completed" and metrics["val_loss"] > 0
    assert metrics["missing_files"].startswith("checkpoint not written: no space left on device under")
    assert (out / "state.pt").exists() and not (out / "checkpoint.pt").exists()
    resume = result.stderr.splitlines()[-1].strip()
    assert resume.startswith("archsearch train") and resume.endswith("--resume")

    disk.fill()
    again = invoke(*resume.split()[1:])
    assert again.exit_code == 0, again.output
    assert (out / "checkpoint.pt").exists() and not (out / "state.pt").exists()
    assert json.loads((out / "metrics.json").read_text())["missing_files"] is None


def test_train_whose_state_cannot_be_saved_stops_with_the_line(train_file, tmp_path, disk):
    out = tmp_path / "run"
    disk.fill("state.pt")
    result = invoke("train", train_file, "--out-dir", out, "--device", "cpu")
    assert result.exit_code == 1
    assert one_error_line(result, "no space left on device") == f"error: no space left on device under {out}"
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- a real full file system


@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder`, leaving about `leave` bytes."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
        except OSError:
            pass
    return filler


def test_every_writer_on_a_real_full_disk_says_so(tiny_fs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from PIL import Image

    from archsearch.samples import write_image

    big = torch.randn(1024, 1024)  # 4 MB: more than the whole file system
    frame = pd.DataFrame(np.random.default_rng(0).random((200_000, 4)), columns=list("abcd"))
    figure = plt.figure(figsize=(20, 20))
    figure.gca().imshow(np.random.default_rng(0).random((800, 800)))
    writers = {
        "torch.save": lambda p: atomic_torch_save(p, {"w": big}),
        "csv": lambda p: atomic_write(p, lambda tmp: frame.to_csv(tmp)),
        "parquet": lambda p: atomic_write(p, lambda tmp: frame.to_parquet(tmp, compression=None)),
        "png": lambda p: write_image(p, Image.fromarray(np.random.default_rng(0).integers(0, 255, (2048, 2048), np.uint8))),
        "matplotlib": lambda p: atomic_write(p, lambda tmp: figure.savefig(tmp, format="png", dpi=200)),
    }
    try:
        import safetensors.torch

        writers["safetensors"] = lambda p: atomic_write(p, lambda tmp: safetensors.torch.save_file({"w": big}, tmp))
    except ImportError:
        pass
    for name, write in writers.items():
        with pytest.raises(WriteFailed, match=f"^no space left on device under {tiny_fs / name}$"):
            write(tiny_fs / name / "file")
            pytest.fail(f"{name} wrote {os.path.getsize(tiny_fs / name / 'file')} bytes")
        assert list((tiny_fs / name).iterdir()) == [], name  # nothing half-written
    plt.close(figure)


def test_a_study_on_a_real_full_disk_stops_and_resumes(tiny_fs, tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(tiny(study={"checkpoints": "all", "trials": 3}, **DISTINCT)))
    command = [sys.executable, "-m", "archsearch.cli", "run", str(space_file), "--results-dir", str(tiny_fs),
               "--trials", "1"]
    assert subprocess.run(command, capture_output=True).returncode == 0
    folder = tiny_fs / "tiny"
    (first,) = storage_trials(folder)
    filler = fill(tiny_fs, leave=4096)
    full = subprocess.run(command[:-1] + ["3"], capture_output=True, text=True)
    assert full.returncode == 1
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on device under ") and "Traceback" not in full.stderr

    filler.unlink()
    again = subprocess.run(command[:-1] + ["3"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    trials = storage_trials(folder)
    assert trials[0].state.name == "COMPLETE" and trials[0].values == first.values  # recorded earlier: kept
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3


def test_the_readme_quotes_the_lines_archsearch_prints():
    from archsearch.io import describe_write_failure

    readme = (Path(__file__).parent.parent / "README.md").read_text().replace("\n", " ")
    folder = "results/quickstart/trials/3"
    line = describe_write_failure(errno.ENOSPC, folder)
    assert f"`warning: trial 3: checkpoint not written: {line}`" in readme
    assert f"`error: {line}`" in readme


def test_a_download_that_fills_the_disk_stops_at_the_first_mirror(tmp_path, monkeypatch):
    import io

    import archsearch.data.standard as standard

    asked = []

    def urlopen(url, timeout=None):
        asked.append(url)
        return io.BytesIO(b"x" * (3 << 20))

    class FullFile(io.BytesIO):
        def write(self, data):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    real_open = open
    monkeypatch.setattr(standard.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(standard, "open", lambda path, mode="r", *a, **k: FullFile() if "w" in mode
                        else real_open(path, mode, *a, **k), raising=False)
    resource = standard.Resource("data.bin", ("https://one.example/data.bin", "https://two.example/data.bin"), "0" * 32)
    with pytest.raises(WriteFailed, match=f"^disk quota exceeded under {tmp_path}$"):
        standard.fetch(resource, tmp_path)
    assert asked == ["https://one.example/data.bin"] and list(tmp_path.iterdir()) == []
