"""Reading a study folder's files: one way, for every command that reads them.

    space = read_space(folder)                  # space.yaml as data, checked against the schema; None without one
    space = read_space(folder, required=True)   # ... and a `folder: holds no space.yaml` error without one
    check_journal(folder / "optuna.journal")    # before Optuna replays the embedded storage
    names = replayed(journal, lambda: [s.study_name for s in optuna.get_all_study_summaries(storage)])

`archsearch run` writes a study folder (archsearch.search.study, archsearch.folder); `report`,
`results`, `verify`, `train --trial`, `export --trial` and `ablate --report-only` read it back.
Whatever has happened to a file since (not YAML, binary bytes, empty, cut short, a folder in its
place, a space that the schema refuses, a journal line that is not a record), reading it raises
`ConfigErrors` whose lines name the file (and the line and column, for YAML), so every command
answers the same way: `results/q/space.yaml: line 3, column 9: ...`, exit 2, no traceback.

The checkpoints and training states a folder holds are read by archsearch.train.load_checkpoint
and archsearch.train_state.load_state, which refuse a damaged or unsafe file in the same way.
Imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, ConfigErrors
from ..schema.space import space_from_dict
from ..schema.yaml_file import read_yaml

__all__ = ["SPACE_NAME", "read_space", "check_journal", "replayed"]

SPACE_NAME = "space.yaml"  # a study folder's resolved space (archsearch.search.study writes it)

T = TypeVar("T")
_DAMAGED = "the storage is damaged: restore the file from a copy, or move the folder aside to start the study again"


def _damaged(path: str | Path, errors: ConfigErrors | list[ConfigError], what: str) -> ConfigErrors:
    """The schema's complaints about the file at `path` as one line naming the file: the first
    problem (at its field) and how many more there are."""
    errors = errors.errors if isinstance(errors, ConfigErrors) else list(errors)
    first = errors[0]
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    field = f"{first.path}: " if first.path else ""
    return ConfigErrors([ConfigError(str(path), f"is not a valid {what}: {field}{first.message}{more}")])


def read_space(folder: str | Path | None, required: bool = False) -> dict[str, Any] | None:
    """The space file `archsearch run` keeps in a study folder, as the data it holds (what the
    report describes, and what a retrain composes its space from), after checking that it is a
    space file today's schema accepts. None when there is none (an error when `required`)."""
    if folder is None:
        return None
    path = Path(folder) / SPACE_NAME
    if not path.exists() and not path.is_symlink():
        if required:
            raise ConfigErrors([ConfigError(str(folder), f"holds no {SPACE_NAME}: a trial trains under the data, "
                                                         "validation and timing settings that `archsearch run` keeps "
                                                         "there; give the study's folder")])
        return None
    data = read_yaml(path)  # file, line and column of anything that is not a YAML mapping
    try:
        space_from_dict(data)
    except ConfigErrors as exc:
        raise _damaged(path, exc, "space file") from None
    return data


def check_journal(path: str | Path) -> int:
    """Check the embedded storage at `path` before Optuna replays it: a file (not a folder) of
    JSON records, one a line, the last of which may be cut short (archsearch.search.journal sets
    such a tail aside). Returns how many whole records it holds; a missing file is 0 (the
    callers say what its absence means). Raises ConfigErrors naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return 0
    if path.is_dir():
        raise _journal_error(path, "is a folder, not the study's journal file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _journal_error(path, f"cannot be read ({exc.strerror or exc})") from None
    lines = raw.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line), default=-1)
    records = 0
    for i, line in enumerate(lines[:last + 1]):
        why = _not_a_record(line)
        if why is None:
            records += 1
        elif not (i == last and line.startswith(b"{")):  # a record cut short by a killed writer: set aside on opening
            raise _journal_error(path, f"line {i + 1} is not a journal record ({why}); {_DAMAGED}")
    if records == 0:
        raise _journal_error(path, "holds no record: it is empty (or was cut short), so no study is stored in it")
    return records


def replayed(path: str | Path, read: Callable[[], T]) -> T:
    """`read()`, the first call that makes Optuna replay the journal at `path`: records that are
    JSON but not what Optuna wrote (a field missing, of another type) fail there, as one line
    naming the file instead of Optuna's KeyError."""
    try:
        return read()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        why = f"a record lacks {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {text}"
        raise _journal_error(Path(path), f"holds records that Optuna cannot replay ({why}); {_DAMAGED}") from None


def _not_a_record(line: bytes) -> str | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "bytes that are not UTF-8 text"
    except ValueError:
        return "not JSON"
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        return "JSON without an op_code"
    return None


def _journal_error(path: Path, message: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(str(path), message)])
