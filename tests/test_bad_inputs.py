"""The bad-input corpus: every file in tests/bad_inputs/ is refused cleanly by `validate` and `run`.

Each file states what its error must name in a first line `# expect: <text>` (a field path, or
the words of the message); a file whose bytes cannot be read as text must name the file itself.
For every file and both commands: exit status 2, no traceback, that text in the output, nothing
created (neither the study folder nor anything else in the working folder), and an answer
within 10 seconds (a hang guard for the planner and the YAML reader, not a speed test).
"""

from __future__ import annotations

import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archsearch.cli import app

CORPUS = Path(__file__).parent / "bad_inputs"
FILES = sorted(CORPUS.glob("*.yaml"))  # space files, for `validate` and `run`
ABLATIONS = sorted((CORPUS / "ablations").glob("*.yaml"))  # for `validate` and `ablate`
runner = CliRunner()


def expectation(path: Path) -> tuple[str, set[str]]:
    """(text the error must contain, `# needs:` tags) of a corpus file."""
    raw = path.read_bytes()
    for encoding in ("utf-8", "utf-16", "utf-32"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        return path.name, set()
    lines = [line for line in text.splitlines() if line.startswith("# ")]
    expect = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("# expect:")), path.name)
    needs = {line.split(":", 1)[1].strip() for line in lines if line.startswith("# needs:")}
    return expect, needs


def make_fixtures(root: Path) -> None:
    """What the data cases point at: an empty folder, undecodable images, a plain file."""
    (root / "empty_images").mkdir()
    broken = root / "broken_images"
    broken.mkdir()
    for name in ("a.png", "b.jpg"):
        (broken / name).write_bytes(b"not an image at all")
    (root / "a_file.txt").write_text("just text\n")


@contextmanager
def answers_within(seconds: int):
    def hung(signum, frame):
        raise TimeoutError(f"no answer within {seconds}s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_the_corpus_is_large_and_self_describing():
    assert len(FILES) >= 60
    named = [f for f in FILES if expectation(f)[0] != f.name]
    assert len(named) >= len(FILES) - 6  # only unreadable bytes fall back to the file name


CASES = [(path, command) for path in FILES for command in ("validate", "run")] + \
        [(path, command) for path in ABLATIONS for command in ("validate", "ablate")]


@pytest.mark.parametrize("path,command", CASES, ids=[f"{p.parent.name}/{p.stem}-{c}" for p, c in CASES])
def test_bad_input_is_exit_2_with_nothing_written(path, command, tmp_path, monkeypatch):
    expect, needs = expectation(path)
    if "no-cuda" in needs:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA, so `device: cuda` is valid here")
    monkeypatch.chdir(tmp_path)
    make_fixtures(tmp_path)
    target = tmp_path / path.name
    shutil.copyfile(path, target)
    before = snapshot(tmp_path)
    args = [command, path.name] + (["--results-dir", "results"] if command != "validate" else [])
    with answers_within(10):
        result = runner.invoke(app, args)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit), result.exception  # the CLI's own exit, nothing raised through
    assert expect in output, output
    assert snapshot(tmp_path) == before, f"{command} created {snapshot(tmp_path) - before}"
