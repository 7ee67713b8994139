"""Optuna's gRPC storage proxy: many workers on one database through one server.

    archsearch storage-proxy --storage postgresql+psycopg://user:pw@db/archsearch --port 13000
    archsearch run space.yaml --storage grpc://proxy-host:13000 --workers 8   # on every machine

`serve_proxy` runs `optuna.storages.run_grpc_proxy_server` in front of a database storage (the
one `open_storage` opens for its URL); `open_grpc_storage` is the client, an
`optuna.storages.GrpcStorageProxy`, which `open_storage` returns for `grpc://HOST:PORT`. Each
worker then holds one gRPC channel instead of a database connection pool.

What Optuna 5's proxy does (read in optuna/storages/_grpc), and what archsearch does about it:

- **Heartbeats.** `GrpcStorageProxy` is a plain `BaseStorage`, not a `BaseHeartbeat`: Optuna's
  own heartbeat and `fail_stale_trials` do not exist through it. archsearch needs neither: its
  heartbeat is the trial user attribute `heartbeat` (archsearch.search.worker), which the proxy
  carries like any attribute, so a dead worker's trial is failed and retried through the proxy as
  through any storage.
- **Caching.** The client caches trials: `get_all_trials` asks only for trials newer than the
  newest finished one it holds, and again for every one it holds unfinished. A running trial's
  heartbeat and phase are always read fresh; a finished trial, which cannot change, is read once.
  `get_trial` is not cached. (It takes trial ids to appear in order: a trial created before
  one that is already finished, but committed after it, would stay unseen by that client; here
  that would need a trial's creation to take longer than another trial's training.) Behind the
  server, `get_storage` puts Optuna's trial cache in front of the RDBStorage, as its docs advise.
- **Connecting.** The channel connects lazily and a call to a proxy that is down fails at once
  with `grpc.RpcError` UNAVAILABLE. `open_grpc_storage` first waits up to `CONNECT_TIMEOUT`
  seconds (`wait_server_ready`), so that jobs started with their proxy do not race it, then says
  which address did not answer. Later, UNAVAILABLE is transient (storage.is_transient): the
  calls are repeated while a proxy restarts.
- **What it fronts.** Any storage object, served without TLS or authentication. Optuna 5
  documents a JournalStorage behind it as unsupported (optuna/optuna#6084: the journal assumes
  one thread owns a trial from ask to tell, which the proxy breaks), so `serve_proxy` refuses a
  journal, and another proxy. The database storage is wrapped in `RetryingStorage`, so the
  server rides out the database's blips as a worker would.
- **Binding.** gRPC servers bind with SO_REUSEPORT: a second proxy on a taken port would start
  and silently share its traffic. `serve_proxy` binds a plain socket first to refuse that.
- **Stopping.** `run_grpc_proxy_server` blocks until the process ends; its wait wakes every
  0.1 s, so SIGINT and SIGTERM raise in the main thread, the thread pool handed to it finishes
  the calls in flight, and `serve_proxy` returns.
"""

from __future__ import annotations

import errno
import socket
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, ConfigErrors, Interrupted, excerpt
from ..urls import check_storage_url, grpc_address, mask_url

__all__ = ["CONNECT_TIMEOUT", "INSTALL_HINT", "open_grpc_storage", "serve_proxy", "proxy_line", "require_grpc"]

CONNECT_TIMEOUT = 10.0  # seconds a client waits for its proxy to answer before it gives up
INSTALL_HINT = "pip install -e '.[grpc]'"
_SERVER_THREADS = 16  # concurrent calls the server handles (Optuna's default is 10)


def require_grpc(path: str, what: str) -> None:
    """ConfigError at `path` when grpcio or protobuf, which Optuna's proxy needs, is missing."""
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError:
        raise ConfigErrors([ConfigError(path, f"{what} needs grpcio and protobuf, which are not installed: "
                                              f"{INSTALL_HINT}")]) from None


def open_grpc_storage(url: str):
    """A `GrpcStorageProxy` for `grpc://HOST:PORT`, once its server answers (module docstring)."""
    host, port = grpc_address(url)
    require_grpc("--storage", "a grpc:// storage")
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT)
    except ConnectionError:
        proxy.close()
        raise RuntimeError(f"no storage proxy answers at {mask_url(url)} (waited {CONNECT_TIMEOUT:g} s); start one "
                           f"there with `archsearch storage-proxy --storage DATABASE_URL --port {port}`") from None
    return proxy


def _check_backend(storage: str) -> None:
    if storage.startswith("grpc://"):
        raise ConfigError("--storage", f"{excerpt(mask_url(storage), 200)} is a proxy itself; give the database this proxy "
                                       "should front, e.g. postgresql+psycopg://user@db/archsearch")
    if storage.startswith(("journal://", "file://")):
        raise ConfigError("--storage", "Optuna's gRPC proxy does not support a journal file behind it "
                                       "(optuna/optuna#6084: trials of concurrent clients fail); give a database, "
                                       "e.g. postgresql+psycopg://user@db/archsearch")
    check_storage_url(storage)


def _client_host(host: str) -> str:
    """The host workers name: this machine's name for a wildcard address."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "[::]") else host


def _loopback(host: str) -> str:
    """Where this process reaches its own server."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}.get(host, host)


def proxy_line(storage: str, host: str, port: int) -> str:
    """The line `archsearch storage-proxy` prints once it answers: where, what for, how to stop."""
    return (f"storage proxy on {host}:{port} in front of {mask_url(storage)}; workers use "
            f"--storage grpc://{_client_host(host)}:{port}; Ctrl-C or SIGTERM stops it")


def _check_port_free(host: str, port: int) -> None:
    """ConfigError for a host this machine cannot listen on; RuntimeError for a port in use."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        family, kind, proto, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigErrors([ConfigError("--host", f"{excerpt(host)} is not an address or host name ({exc.strerror})")]) from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigErrors([ConfigError("--host", f"{excerpt(host)} is not an address of this machine; "
                                                          "give one of its addresses, or 0.0.0.0 for all")]) from None
            raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror} (another proxy or program holds "
                               "the port; give another --port)") from None


def _announce_when_ready(host: str, port: int, line: str, on_ready: Callable[[str], None]) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        client = optuna.storages.GrpcStorageProxy(host=_loopback(host), port=port)
    try:
        client.wait_server_ready(timeout=60)
    except ConnectionError:
        return  # the server did not start: the main thread says why
    finally:
        client.close()
    on_ready(line)


def serve_proxy(storage: str, port: int, host: str = "0.0.0.0", on_ready: Callable[[str], None] = print) -> str | None:
    """Serve the database storage `storage` to `grpc://` clients on `host:port` until SIGINT or
    SIGTERM; `on_ready` hears `proxy_line` once the server answers. Returns the signal's name.

    Bad input (a journal or a proxy as the backend, a port out of range, a host not of this
    machine, grpcio missing) raises ConfigErrors; a port in use or a database that does not answer
    raises RuntimeError, before anything listens.
    """
    try:
        _check_backend(storage)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    if not 1 <= port <= 65535:
        raise ConfigErrors([ConfigError("--port", f"{port} is not a port number from 1 to 65535")])
    require_grpc("storage-proxy", "the storage proxy")
    _check_port_free(host, port)

    from concurrent.futures import ThreadPoolExecutor

    import optuna

    from .storage import open_storage
    from .worker import handle_signals

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our line says where it listens, not Optuna's two
    pool = ThreadPoolExecutor(max_workers=_SERVER_THREADS, thread_name_prefix="archsearch-proxy")
    try:
        with handle_signals():
            backend = open_storage(storage, Path("."))
            threading.Thread(target=_announce_when_ready, args=(host, port, proxy_line(storage, host, port), on_ready),
                             name="archsearch-proxy-ready", daemon=True).start()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.run_grpc_proxy_server(backend, host=host, port=port, thread_pool=pool)
    except Interrupted as exc:
        import signal

        return signal.Signals(exc.signum).name
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the calls in flight are answered first
    return None
