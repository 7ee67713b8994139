"""Where a study lives: the embedded journal in the study folder, or an RDB server.

- Default: `JournalStorage(JournalFileBackend(<study dir>/optuna.journal))`. Several processes on
  one machine append to it under a file lock; SQLite would give "database is locked" (Optuna's
  docs advise against it for parallel workers). optuna-dashboard opens the journal file as it is.
  A torn last record is set aside when it is opened (archsearch.search.journal).
- `--storage postgresql+psycopg://user:pass@host/db` (or mysql+pymysql://, sqlite:///):
  `RDBStorage`, for many machines. Without Optuna's heartbeat: archsearch.search.worker writes
  its own for every storage, and Optuna's would only warn outside `study.optimize`.
- `--storage grpc://HOST:PORT`: Optuna's `GrpcStorageProxy`, a client of the proxy server that
  `archsearch storage-proxy` runs in front of a database (archsearch.search.proxy), for more
  workers than a database takes connections.

Either way the storage is wrapped in `RetryingStorage` (archsearch.search.retry): a call that
meets a moment's outage (`is_transient`) is repeated a few times before the error goes on.

Passwords never reach a user: `open_storage` registers its URL (archsearch.urls.register_url), so
that `redact` hides its password in any text shown in this process, and `describe_storage` shows
the URL through `mask_url`.

**The one adapter to Optuna's private parts.** Optuna 5's public API has no way to write to a
trial from a thread other than the one holding its `Trial` (heartbeats, phases), to re-read one
trial without listing the study, to fail a trial that another process started, or to attach to a
RUNNING trial found in the storage. `StoredTrial` does those four things, through
`study._storage` and `trial._trial_id`; no other module of archsearch touches them
(tests/test_layering.py checks it), so an Optuna upgrade that renames them changes this file and
archsearch.search.journal (the journal file's lock and record format) only.
"""

from __future__ import annotations

import errno
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import elide
from ..io import WriteFailed, WriteWarning, write_failure
from ..urls import check_storage_url, mask_url, redact, register_url

__all__ = ["JOURNAL_NAME", "StorageWarning", "StoredTrial", "open_storage", "describe_storage", "describe_error",
           "is_transient", "format_storage_warnings"]

JOURNAL_NAME = "optuna.journal"


@dataclass(frozen=True)
class StoredTrial:
    """A trial of `study` as its storage holds it, by the storage's own id (see the module docstring).

    Safe to use from any thread: it holds the study and ids, never a `Trial` object.
    """

    study: Any  # an optuna Study
    id: int
    number: int

    @classmethod
    def of(cls, study, trial) -> StoredTrial:
        """For an `optuna.trial.Trial` or a `FrozenTrial` of `study`."""
        return cls(study, trial._trial_id, trial.number)

    def current(self):
        """The trial's FrozenTrial, as the storage holds it now."""
        return self.study._storage.get_trial(self.id)

    def set_attr(self, key: str, value: Any) -> None:
        self.study._storage.set_trial_user_attr(self.id, key, value)

    def mark_failed(self) -> bool:
        """Set the trial FAIL; False when it had already finished (another worker got there first)."""
        import optuna

        return self.study._storage.set_trial_state_values(self.id, optuna.trial.TrialState.FAIL)

    def live(self):
        """An `optuna.trial.Trial` to tell the study with, for a RUNNING trial this process did not ask."""
        import optuna

        return optuna.trial.Trial(self.study, self.id)

class StorageWarning(UserWarning):
    """Something in the storage was repaired or set aside, and the study goes on."""


def format_storage_warnings(prefix: str = "") -> None:
    """Show a `StorageWarning` or a `WriteWarning` (archsearch.io) as one line,
    `<prefix>warning: <message>`, without the file and line that warned and without a password
    (other warnings keep Python's format, passwords hidden too)."""
    default = getattr(warnings.formatwarning, "python_format", warnings.formatwarning)

    def one_line(message, category, filename, lineno, line=None):
        if issubclass(category, (StorageWarning, WriteWarning)):
            return f"{prefix}warning: {redact(str(message))}\n"
        return redact(default(message, category, filename, lineno, line))

    one_line.python_format = default  # so that calling this again replaces, not stacks
    warnings.formatwarning = one_line


_ERROR_LINE = 2000  # the most characters of an error's message `describe_error` shows


def describe_error(exc: BaseException, url: str | None = None) -> str:
    """`OperationalError: connection failed: ...`: the error's type and the first line of its
    message (at most `_ERROR_LINE` characters), passwords redacted (those of every URL this
    process registered, and of `url`). Optuna's StorageInternalError ("An exception is raised
    during the commit...") gives way to the database error it wraps, which says what happened."""
    from optuna.exceptions import StorageInternalError

    if isinstance(exc, StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__
    failure = write_failure(exc, exc.filename) if isinstance(exc, OSError) and exc.filename else None
    if failure is not None or isinstance(exc, WriteFailed):  # `no space left on device under <folder>`
        return str(failure or exc)
    if _grpc_code(exc) is not None:  # its text is a multi-line repr; its details say what happened
        details = _first_line(exc.details() or "", url)
        return f"gRPC {_grpc_code(exc).name}: {details or 'no details'}"
    text = _first_line(str(exc), url)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(text: str, url: str | None) -> str:
    """The first line of `text`, redacted, then elided."""
    text = redact(text, url).strip()
    return elide(text.splitlines()[0], _ERROR_LINE).strip() if text else ""


def describe_storage(url: str | None, study_dir: Path) -> str:
    """What a summary shows as the storage: the URL, its password masked, or the journal's path."""
    return mask_url(url) if url else str(study_dir / JOURNAL_NAME)


def open_storage(url: str | None, study_dir: Path):
    """An Optuna storage for `url`, or the embedded journal in `study_dir`."""
    import optuna
    from optuna.storages import JournalStorage

    from .journal import JournalFile
    from .retry import RetryingStorage

    register_url(url)
    if not url:
        study_dir.mkdir(parents=True, exist_ok=True)
        return RetryingStorage(JournalStorage(JournalFile(str(study_dir / JOURNAL_NAME))))
    if url.startswith(("journal://", "file://")):
        return RetryingStorage(JournalStorage(JournalFile(url.split("://", 1)[1])))
    if url.startswith("grpc://"):
        from .proxy import open_grpc_storage

        return RetryingStorage(open_grpc_storage(url))
    check_storage_url(url)  # a URL the driver would misread may show a piece of its password in its error
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # noqa: BLE001 - driver errors carry the URL; never show it raw
        raise RuntimeError(f"cannot open storage {mask_url(url)}: {_first_line(str(exc), url)}") from None
    # get_storage adds the trial cache Optuna puts in front of every RDBStorage it opens itself.
    return RetryingStorage(optuna.storages.get_storage(rdb))


# A write error the journal file may recover from: a full disk or quota, a flaky device, a file size limit.
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EAGAIN, errno.EINTR}


def _grpc_code(exc: BaseException):
    """The status code of a gRPC error (grpc is looked up, never imported: only a grpc:// storage loads it)."""
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(exc, grpc.RpcError) or not callable(getattr(exc, "code", None)):
        return None
    return exc.code()


def is_transient(exc: BaseException) -> bool:
    """True for what a storage raises while it is briefly unreachable: a database connection
    lost or refused (sqlalchemy's OperationalError, also wrapped in Optuna's StorageInternalError),
    a storage proxy unavailable (gRPC UNAVAILABLE: restarting, or its network dropped), or a
    journal write failing for want of space or I/O."""
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS
    code = _grpc_code(exc)
    if code is not None:
        return code.name == "UNAVAILABLE"
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - Optuna depends on SQLAlchemy
        return False
    return isinstance(exc, OperationalError) or isinstance(exc.__cause__, OperationalError)
