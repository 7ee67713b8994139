"""Storage calls that outlast a moment's outage: every call is retried on transient errors.

A database connection dropped for a second, or a disk full for a moment, must not turn a trained
trial into a lost one, nor end a worker. `RetryingStorage` wraps the storage `open_storage`
returns and repeats any call (reads and writes alike) that fails with what a storage raises when
it is briefly unreachable (`archsearch.search.storage.is_transient`: sqlalchemy's
OperationalError, a storage proxy's gRPC UNAVAILABLE, a journal write's ENOSPC or EIO), pausing `RETRY_DELAYS` seconds between
attempts. Anything else (a finished trial updated, a study that does not exist) is an answer,
not an outage, and goes through at once.

Repeating a write is safe because a failed one leaves nothing behind: a database rolls the
transaction back, and the journal cuts the bytes a failed append wrote
(archsearch.search.journal). The one exception is a database commit that succeeded but whose
answer was lost with the connection: repeated, it sets an attribute twice (harmless) or asks
for one trial more. If the storage stays down the error goes on; the worker ends, and
a finished trial's result waits on disk to be recorded by the next run (archsearch.search.records).
"""

from __future__ import annotations

import abc
import time

from optuna.storages import BaseStorage

from .storage import is_transient

__all__ = ["RetryingStorage", "RETRY_DELAYS"]

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds before the 2nd, 3rd, ... attempt: about 8 s in all


class RetryingStorage(BaseStorage):
    """Every public method of `BaseStorage`, delegated to `inner` and retried (module docstring)."""

    def __init__(self, inner: BaseStorage):
        self.inner = inner

    def __repr__(self) -> str:
        return f"RetryingStorage({self.inner!r})"


def _retried(name: str):
    def method(self, *args, **kwargs):
        call = getattr(self.inner, name)
        for delay in (*RETRY_DELAYS, None):
            try:
                return call(*args, **kwargs)
            except Exception as exc:
                if delay is None or not is_transient(exc):
                    raise
            time.sleep(delay)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(BaseStorage, name).__doc__
    return method


for _name in [n for n in dir(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))]:
    setattr(RetryingStorage, _name, _retried(_name))
abc.update_abstractmethods(RetryingStorage)
