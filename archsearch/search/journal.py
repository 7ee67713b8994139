"""The embedded journal file, kept readable whatever happens to its last bytes.

Optuna's `JournalFileBackend` appends one JSON record per line. A full disk, an I/O error or a
process killed inside `write` leaves the last line unterminated. Optuna skips such a line when
reading, but the next append lands on it, and from then on every read fails with a
JSONDecodeError: the study is poisoned for good. `JournalFile` sets a torn tail aside before
anything is appended to it:

- when the journal is opened (every reader and writer goes through
  `archsearch.search.storage.open_storage`), a last line that does not end in "\\n", or ends in
  it but is not JSON, is cut off;
- before every append, a last byte that is not "\\n" (another process died mid-write) is;
- when an append fails (ENOSPC, EIO, EFBIG), what it wrote is cut off before the error goes
  on, so that retrying it (archsearch.search.retry) writes the record once.

What is cut off is appended to `optuna.journal.torn`, and a `StorageWarning` names the lost
record. It all happens under the journal's lock (`JournalFileOpenLock`), which every writer
holds while appending, so a record another process is still writing is never taken for a torn
one. Only the tail is ever cut: complete records keep the byte offsets that readers in other
processes have cached, and a torn line was never applied by any reader (Optuna reads only
complete lines).
"""

from __future__ import annotations

import json
import os
import re
import warnings

from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation

from ..io import write_failure
from .storage import StorageWarning

__all__ = ["JournalFile", "TORN_SUFFIX", "repair_journal"]

TORN_SUFFIX = ".torn"
_BLOCK = 1 << 16


class JournalFile(JournalFileBackend):
    """`JournalFileBackend` under its open(O_EXCL) lock, repaired on opening and on failed appends."""

    def __init__(self, path: str):
        # The open(O_EXCL) lock works on every local filesystem; Optuna's default symlink lock too,
        # but leaves a stale link behind when a worker is SIGKILLed inside the critical section.
        super().__init__(path, lock_obj=JournalFileOpenLock(path))
        repair_journal(path, self._lock)

    def append_logs(self, logs: list[dict]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        with get_lock_file(self._lock), open(self._file_path, "a+b", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size and os.pread(f.fileno(), 1, size - 1) != b"\n":
                size = _set_aside(self._file_path, f, _last_line_start(f, size), size, "a writer died mid-record")
            try:
                view = memoryview(data)
                while view:  # unbuffered: a short write is retried, a failed one raises
                    view = view[f.write(view):]
                os.fsync(f.fileno())
            except OSError as exc:
                end = os.fstat(f.fileno()).st_size
                if end == size + len(data):
                    return  # every byte is in the file (only fsync failed): readers may have read it
                if end > size:
                    _set_aside(self._file_path, f, size, end, f"appending failed: {exc.strerror or exc}")
                failure = write_failure(exc, self._file_path)  # `no space left on device under <folder>`
                if failure is None:
                    raise
                raise failure from exc


def repair_journal(path: str, lock=None) -> None:
    """Set a torn last record of the journal at `path` aside (see the module docstring)."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        if _torn_start(f) is None:  # the usual case, decided without the lock
            return
    with get_lock_file(lock or JournalFileOpenLock(path)), open(path, "a+b", buffering=0) as f:
        start = _torn_start(f)  # again under the lock: a writer may just have finished its line
        if start is not None:
            _set_aside(path, f, start, os.fstat(f.fileno()).st_size, "found when opening the journal")


def _torn_start(f) -> int | None:
    """Where the torn last line starts, or None when the journal ends with a complete record."""
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        return None
    start = _last_line_start(f, size)
    line = os.pread(f.fileno(), size - start, start)
    if not line.endswith(b"\n"):
        return start
    try:
        json.loads(line)
    except ValueError:
        return start
    return None


def _last_line_start(f, size: int) -> int:
    """Offset of the first byte after the last "\\n" that precedes the file's last byte."""
    end = size - 1  # the last byte is the last line's own "\n", or part of a torn line
    while end > 0:
        begin = max(0, end - _BLOCK)
        i = os.pread(f.fileno(), end - begin, begin).rfind(b"\n")
        if i >= 0:
            return begin + i + 1
        end = begin
    return 0


def _set_aside(path: str, f, start: int, end: int, why: str) -> int:
    """Move bytes [start, end) of the journal to the .torn file; returns the new size (`start`)."""
    torn = os.pread(f.fileno(), end - start, start)
    kept = f"set aside in {path}{TORN_SUFFIX}"
    try:
        with open(path + TORN_SUFFIX, "ab") as out:
            out.write(torn if torn.endswith(b"\n") else torn + b"\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        kept = f"dropped ({path}{TORN_SUFFIX} could not be written: {exc.strerror or exc})"
    os.ftruncate(f.fileno(), start)
    os.fsync(f.fileno())
    warnings.warn(f"{path}: the torn last record ({_describe(torn)}, {len(torn)} bytes at offset {start}; {why}) "
                  f"was {kept}; the study goes on without it", StorageWarning, stacklevel=2)
    return start


def _describe(record: bytes) -> str:
    """`set_trial_user_attr of trial 3`, or the record's first bytes when they say less."""
    op = re.search(rb'"op_code":\s*(\d+)', record)
    trial = re.search(rb'"trial_id":\s*(\d+)', record)
    if op is None or int(op[1]) not in JournalOperation._value2member_map_:
        return f"{record[:60].decode('utf-8', 'replace')!r}"
    name = JournalOperation(int(op[1])).name.lower()
    return f"{name} of trial {int(trial[1])}" if trial else name
