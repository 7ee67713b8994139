"""Atomic file and folder writes: a reader (or a killed writer) never sees half a file, or a
folder with some of its files; and one way to say why a write failed.

    atomic_write_json("results/q/trials/3/metrics.json", payload)   # whole, or the old file stays
    except OSError as exc: print(exc)  # `no space left on device under results/q/trials/3`

A write that fails for want of room or for any other reason of the file system raises
`WriteFailed`, an OSError whose text is one line naming the folder: errno 28 and 122 read "no
space left on device" and "disk quota exceeded", whatever library wrote the file (torch, pyarrow,
safetensors and Pillow each word it their own way, some without an errno: `write_failure` finds
it in the exception's chain or its text). Callers decide what a failure costs: an optional file
(a checkpoint, a sample grid) is marked missing and the run goes on; a record the user cannot do
without stops the command with exit 1 and that line.
"""

from __future__ import annotations

import errno as errnos
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "atomic_folder", "folder_taken", "WriteFailed", "WriteWarning",
           "write_failure", "describe_write_failure"]

# the file system's refusals, which a WriteFailed stands for (errno -> the words it is told in);
# the others (a missing folder, a permission) keep their own exception and text
_IN_WORDS = {errnos.ENOSPC: "no space left on device", errnos.EDQUOT: "disk quota exceeded",
             errnos.EFBIG: "file too large", errnos.EROFS: "read-only file system", errnos.EIO: "input/output error"}
_ERRNO_IN_TEXT = re.compile(r"(?:os error|errno)\s*(\d{1,4})", re.IGNORECASE)  # rust's io::Error, arrow's "Detail"


class WriteWarning(UserWarning):
    """An optional file could not be written (one line: which, and why); the run goes on."""


class WriteFailed(OSError):
    """A write under `folder` failed; its text is one line, e.g. `no space left on device under results/q`."""

    def __init__(self, code: int, folder: str | Path):
        super().__init__(code, _IN_WORDS[code], str(folder))
        self.folder = Path(folder)

    def __reduce__(self):  # from a worker process, whole
        return type(self), (self.errno, str(self.folder))

    def __str__(self) -> str:
        return describe_write_failure(self.errno, self.folder)


def describe_write_failure(code: int, folder: str | Path) -> str:
    """`no space left on device under FOLDER` for errno 28, `disk quota exceeded under FOLDER` for 122, ..."""
    return f"{_IN_WORDS.get(code) or os.strerror(code).lower()} under {folder}"


def write_failure(exc: BaseException, path: str | Path) -> WriteFailed | None:
    """The `WriteFailed` that `exc`, raised while writing `path`, stands for; None when nothing in
    it says the file system refused (an error of the writer's own, not of the disk)."""
    if isinstance(exc, WriteFailed):
        return exc
    folder = Path(path).parent if not Path(path).is_dir() else Path(path)
    seen, current = 0, exc
    while current is not None and seen < 16:  # the chain: torch wraps the OSError of a file object
        if isinstance(current, OSError) and current.errno in _IN_WORDS:
            return WriteFailed(current.errno, folder)
        current, seen = current.__cause__ or current.__context__, seen + 1
    text = str(exc)[:4000]
    found = _ERRNO_IN_TEXT.search(text)
    if found and int(found[1]) in _IN_WORDS:
        return WriteFailed(int(found[1]), folder)
    for code in (errnos.ENOSPC, errnos.EDQUOT):
        if os.strerror(code).lower() in text.lower():
            return WriteFailed(code, folder)
    return None


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    _make_parent(path)
    fd, tmp = _failing_as_write(lambda: tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"), path)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal file's mode
        os.replace(tmp, path)
    except Exception as exc:
        failure = write_failure(exc, path)
        if failure is None:
            raise
        raise failure from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _make_parent(path: Path) -> None:
    _failing_as_write(lambda: path.parent.mkdir(parents=True, exist_ok=True), path)


def _failing_as_write(action: Callable[[], Any], path: Path) -> Any:
    try:
        return action()
    except Exception as exc:
        failure = write_failure(exc, path)
        if failure is None:
            raise
        raise failure from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def atomic_torch_save(path: str | Path, payload: Any) -> Path:
    """`torch.save(payload)` to `path`, atomically. Through a file object: given a path, torch
    writes with its own C++ writer, whose failure on a full disk names no errno ("unexpected pos")."""
    import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(payload, f)

    return atomic_write(path, write)


def folder_taken(path: Path) -> bool:
    """Whether writing a folder at `path` would replace something (anything but an empty folder)."""
    return path.exists() and not (path.is_dir() and not any(path.iterdir()))


def atomic_folder(path: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call `write(tmp_folder)` on a new folder beside `path`, then rename it into place.

    An existing `path` is an error (FileExistsError) unless it is an empty folder or `overwrite`
    is set; then it is replaced only once the new folder is complete.
    """
    path = Path(path)
    _make_parent(path)
    if folder_taken(path) and not overwrite:
        raise FileExistsError(path)
    tmp = Path(_failing_as_write(lambda: tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"),
                                 path.parent))
    old = None

    def write_and_swap() -> None:
        nonlocal old
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder a normal folder's mode
        if path.exists():  # moved aside, and back should the rename fail
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old / path.name, path)
                raise
        else:
            os.replace(tmp, path)

    try:
        _failing_as_write(write_and_swap, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            shutil.rmtree(old)
    return path
