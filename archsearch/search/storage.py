"""Where a study lives: the embedded journal in the study folder, or an RDB server.

- Default: `JournalStorage(JournalFileBackend(<study dir>/optuna.journal))`. Several processes on
  one machine append to it under a file lock; SQLite would give "database is locked" (Optuna's
  docs advise against it for parallel workers). optuna-dashboard opens the journal file as it is.
- `--storage postgresql+psycopg://user:pass@host/db` (or mysql+pymysql://, sqlite:///):
  `RDBStorage`, for many machines.

Passwords never reach a user: `redact` (archsearch.urls) replaces them in any text shown.
"""

from __future__ import annotations

from pathlib import Path

from ..urls import redact

__all__ = ["JOURNAL_NAME", "open_storage", "redact", "describe_storage"]

JOURNAL_NAME = "optuna.journal"


def describe_storage(url: str | None, study_dir: Path) -> str:
    return redact(url) if url else str(study_dir / JOURNAL_NAME)


def open_storage(url: str | None, study_dir: Path):
    """An Optuna storage for `url`, or the embedded journal in `study_dir`."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if not url:
        study_dir.mkdir(parents=True, exist_ok=True)
        path = str(study_dir / JOURNAL_NAME)
        # The open(O_EXCL) lock works on every local filesystem; the default symlink lock too,
        # but leaves a stale link behind when a worker is SIGKILLed inside the critical section.
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if url.startswith(("journal://", "file://")):
        path = url.split("://", 1)[1]
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=30,
            grace_period=120,
        )
    except Exception as exc:  # noqa: BLE001 - driver errors carry the URL; never show it raw
        raise RuntimeError(f"cannot open storage {redact(url)}: {redact(str(exc), url).splitlines()[0]}") from None
