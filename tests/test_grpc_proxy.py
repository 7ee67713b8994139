"""Many workers through Optuna's gRPC storage proxy (archsearch.search.proxy): `archsearch
storage-proxy` in front of a database, workers on `--storage grpc://HOST:PORT`.

The proxy runs as a real `archsearch storage-proxy` process on a free loopback port, in front of
a SQLite file, and of PostgreSQL too when ARCHSEARCH_TEST_POSTGRES_URL names one. Every process
a test starts runs this checkout's code (its root leads PYTHONPATH).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.search.proxy import proxy_line

from test_workers import write_space

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("ARCHSEARCH_TEST_POSTGRES_URL")
SECRET = "hunter2-proxy-pw"  # put into the PostgreSQL URL (trust auth accepts any password)
NEEDS_GRPC = "grpcio is not installed: pip install -e '.[grpc]'"
runner = CliRunner()


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def archsearch(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archsearch.cli", *args], text=True, env=env(), cwd=ROOT,
                            stdout=kwargs.pop("stdout", subprocess.PIPE), stderr=kwargs.pop("stderr", subprocess.STDOUT),
                            **kwargs)


def run_to_end(*args, timeout: float = 240) -> tuple[int, str]:
    proc = archsearch(*args)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proxy:
    proc: subprocess.Popen
    backend: str  # the database URL behind it
    port: int
    line: str  # what it printed once it answered

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"


def start_proxy(backend: str, port: int | None = None, timeout: float = 60) -> Proxy:
    """`archsearch storage-proxy` on a loopback port, once it says it listens."""
    port = port or free_port()
    proc = archsearch("storage-proxy", "--storage", backend, "--host", "127.0.0.1", "--port", str(port),
                      stderr=subprocess.PIPE)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            return Proxy(proc, backend, port, proc.stdout.readline().rstrip("\n"))
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the proxy did not start: {proc.communicate()}")


def stop(proxy: Proxy, sig=signal.SIGTERM) -> tuple[int, str]:
    proxy.proc.send_signal(sig)
    out, err = proxy.proc.communicate(timeout=30)
    return proxy.proc.returncode, out + err


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('proxy') / 'backend.db'}"
    if not POSTGRES_URL:
        pytest.skip("set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
    head, rest = POSTGRES_URL.split("://", 1)
    user_host = rest.split("@", 1)[-1]
    user = rest.split("@", 1)[0].split(":")[0] if "@" in rest else "postgres"
    return f"{head}://{user}:{SECRET}@{user_host}"


@pytest.fixture(scope="module")
def proxy(backend):
    pytest.importorskip("grpc", reason=NEEDS_GRPC)
    started = start_proxy(backend)
    yield started
    if started.proc.poll() is None:
        stop(started)
    import optuna

    for name in _created:  # the PostgreSQL database outlives the test
        try:
            optuna.delete_study(study_name=name, storage=backend)
        except KeyError:
            pass
    _created.clear()


_names = iter(range(10**6))
_created: list[str] = []


def unique(prefix: str) -> str:
    """A study name no other run of the tests uses (PostgreSQL's database is shared)."""
    _created.append(f"{prefix}-{os.getpid()}-{int(time.time())}-{next(_names)}")
    return _created[-1]


def space(name: str, trials: int, steps: int = 4) -> dict:
    """Tiny trials (8×8 digits, 8 channels): `steps` sets how long one trains."""
    return {
        "study": {"name": name, "trials": trials, "sampler": {"kind": "random"}, "device": "cpu",
                  "heartbeat_interval": 0.5, "grace_period": 4},
        "data": {"source": "digits", "image_size": 8},
        "train": {"steps": steps, "batch_size": 8, "log_every": 2, "lr": {"float": {"low": 1e-3, "high": 1e-2}}},
        "eval": {"num_images": 16, "timesteps": 5, "curve_points": 0},
        "measure": {"warmup_steps": 1, "repeats": 3, "infer": False, "latency": False, "flops": False},
        "architecture": {
            "levels": [{"width": {"choice": [8, 16]}, "blocks": 1}, {"width": 8, "blocks": 1}],
            "block": {"norm": {"groups": 4}, "activation": {"choice": ["silu", "gelu"]}},
            "middle": {"blocks": 1, "attention": False},
            "embedding": {"dim": 8},
        },
    }




def direct_trials(proxy: Proxy, name: str):
    """The study's trials as the database holds them, read past the proxy."""
    import optuna

    return optuna.load_study(study_name=name, storage=proxy.backend).get_trials(deepcopy=False)


# --- a study through the proxy ---------------------------------------------------------------

def test_the_proxy_says_where_it_listens_and_what_it_fronts(proxy):
    assert proxy.line == proxy_line(proxy.backend, "127.0.0.1", proxy.port)
    assert f"--storage grpc://127.0.0.1:{proxy.port}" in proxy.line and SECRET not in proxy.line


def test_a_study_runs_through_the_proxy_and_its_table_is_the_databases(proxy, tmp_path):
    """In this process (the engine, heartbeats and records through the proxy): seconds, where a
    study of worker processes takes half a minute of imports and data loading."""
    from archsearch import run_study
    from archsearch.results import load_results
    from archsearch.schema.space import space_from_dict

    name = unique("grpc-one")
    summary = run_study(space_from_dict(space(name, trials=3)), tmp_path, storage=proxy.url)
    assert (summary.trials, summary.completed, summary.storage) == (3, 3, proxy.url)
    trials = direct_trials(proxy, name)
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
    assert all(isinstance(t.user_attrs["heartbeat"], float) for t in trials)

    direct = load_results(storage=proxy.backend, study=name)
    pd.testing.assert_frame_equal(load_results(storage=proxy.url, study=name), direct)
    result = runner.invoke(app, ["results", "--storage", proxy.url, "--study", name, "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    direct.to_csv(tmp_path / "direct.csv", index=False)
    expected = pd.read_csv(tmp_path / "direct.csv")
    assert pd.read_csv(tmp_path / "again" / "trials.csv").equals(expected)  # `archsearch results` through the proxy
    assert pd.read_csv(tmp_path / name / "trials.csv").equals(expected)  # the table the study folder holds


@pytest.mark.slow  # three processes that each import torch and read the data: ~40 s on two cores
def test_two_workers_share_one_study_through_the_proxy(proxy, tmp_path):
    from archsearch.results import load_results

    name = unique("grpc-pair")
    code, out = run_to_end("run", str(write_space(tmp_path, space(name, trials=6))), "--results-dir", str(tmp_path),
                           "--storage", proxy.url, "--workers", "2")
    assert code == 0, out
    assert f"storage: {proxy.url}" in out
    every = direct_trials(proxy, name)
    # Two workers that ask at the same moment both see room for one more: the later-numbered
    # one gives way before it trains (archsearch.search.engine.surplus), failed as skipped.
    given_way = [t for t in every if t.user_attrs.get("surplus")]
    assert all(t.state.name == "FAIL" and "phase" not in t.user_attrs for t in given_way)
    trials = [t for t in every if t not in given_way]
    assert len(trials) == 6 and len({t.number for t in trials}) == 6  # exactly the count, each number once
    assert all(t.state.name == "COMPLETE" for t in trials)  # none left RUNNING
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes did work

    direct = load_results(storage=proxy.backend, study=name)
    pd.testing.assert_frame_equal(load_results(storage=proxy.url, study=name), direct)
    code, out = run_to_end("results", "--storage", proxy.url, "--study", name, "--out", str(tmp_path / "again"))
    assert code == 0, out
    direct.to_csv(tmp_path / "direct.csv", index=False)
    expected = pd.read_csv(tmp_path / "direct.csv")
    assert pd.read_csv(tmp_path / "again" / "trials.csv").equals(expected)  # `archsearch results` through the proxy
    assert pd.read_csv(tmp_path / name / "trials.csv").equals(expected)  # the table the run itself wrote


def test_heartbeats_pass_the_proxy_and_a_silent_trial_is_failed_and_retried(proxy, tmp_path):
    """Two clients, each with the proxy client's trial cache: the reaper sees every heartbeat
    the other writes (running trials are read afresh) and fails the trial once they stop."""
    import optuna

    from archsearch.search.storage import StoredTrial, open_storage
    from archsearch.search.worker import Heartbeat, reap_stale_trials

    name = unique("grpc-heartbeat")
    mine = optuna.create_study(study_name=name, storage=open_storage(proxy.url, tmp_path))
    watcher = optuna.load_study(study_name=name, storage=open_storage(proxy.url, tmp_path))
    trial = mine.ask()
    trial.suggest_int("x", 0, 9)
    stored = StoredTrial.of(mine, trial)

    def heartbeat_seen() -> float:
        (running,) = watcher.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return running.user_attrs["heartbeat"]

    with Heartbeat(stored, interval=0.1):
        first = heartbeat_seen()
        time.sleep(0.6)
        assert heartbeat_seen() > first  # the thread's writes get through, and past the watcher's cache
    stored.set_attr("worker", "elsewhere:1")
    assert reap_stale_trials(watcher, grace_period=60, max_retries=1) == []  # a fresh heartbeat: left alone
    stored.set_attr("heartbeat", time.time() - 120)
    assert reap_stale_trials(watcher, grace_period=60, max_retries=1) == [trial.number]

    failed, retry = direct_trials(proxy, name)
    assert failed.state.name == "FAIL" and failed.user_attrs["fail_reason"].startswith(
        "worker died: no heartbeat from elsewhere:1 for 12")
    assert retry.state.name == "WAITING" and retry.user_attrs["retry_of"] == 0
    assert retry.system_attrs["fixed_params"] == failed.params == {"x": trial.params["x"]}  # enqueued: asked next
    assert [t.state.name for t in mine.get_trials(deepcopy=False)] == ["FAIL", "WAITING"]  # the other client sees it


@pytest.mark.slow  # trials long enough to kill one while it trains
def test_a_killed_workers_trial_is_failed_and_retried_through_the_proxy(proxy, tmp_path):
    import optuna

    from archsearch.search.storage import open_storage

    name = unique("grpc-killed")
    proc = archsearch("run", str(write_space(tmp_path, space(name, trials=3, steps=400))), "--results-dir",
                      str(tmp_path), "--storage", proxy.url, "--workers", "2")
    watcher = storage = None
    end = time.monotonic() + 120
    while time.monotonic() < end:  # through the proxy, as a worker sees the study
        try:
            storage = storage or open_storage(proxy.url, tmp_path)
            watcher = watcher or optuna.load_study(study_name=name, storage=storage)
            victim = next((t for t in watcher.get_trials(deepcopy=False)
                           if t.state.name == "RUNNING" and t.user_attrs.get("phase") == "training"), None)
        except KeyError:  # no study yet
            victim = None
        if victim:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"no trial started training: {proc.communicate()[0]}")
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out  # the other worker finished the study
    assert any(line.startswith("warning: worker ") and line.endswith(f"(pid {pid}) was killed by SIGKILL")
               for line in out.splitlines()), out
    trials = {t.number: t for t in direct_trials(proxy, name)}
    dead = trials[victim.number]
    assert dead.state.name == "FAIL" and dead.user_attrs["fail_reason"].startswith("worker died")
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == dead.params and retries[0].state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in trials.values()) == 3  # the study still reaches its count
    assert not [t for t in trials.values() if t.state.name == "RUNNING"]


# --- the proxy server ------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_the_proxy_refuses_a_taken_port_and_stops_cleanly(tmp_path, sig):
    pytest.importorskip("grpc", reason=NEEDS_GRPC)
    first = start_proxy(f"sqlite:///{tmp_path / 'backend.db'}")
    try:
        # gRPC binds with SO_REUSEPORT: without the check a second proxy would share the port.
        code, out = run_to_end("storage-proxy", "--storage", f"sqlite:///{tmp_path / 'other.db'}", "--host",
                               "127.0.0.1", "--port", str(first.port), timeout=60)
        assert code == 1 and out.splitlines()[0].startswith(f"error: RuntimeError: cannot listen on 127.0.0.1:{first.port}")
    finally:
        code, out = stop(first, sig)
    assert code == 0, out
    assert f"storage proxy stopped ({sig.name})" in out and "Traceback" not in out
    assert (tmp_path / "backend.db").exists() and not (tmp_path / "other.db").exists()


def test_the_proxys_line_hides_the_database_password():
    line = proxy_line("postgresql+psycopg://archsearch:hunter2@db.internal/search", "0.0.0.0", 13000)
    assert "hunter2" not in line and "archsearch:***@db.internal" in line
    assert f"--storage grpc://{socket.gethostname()}:13000" in line  # what workers elsewhere name


@pytest.mark.parametrize("args,says", [
    (["--storage", "journal:///tmp/study/optuna.journal"], "--storage: Optuna's gRPC proxy does not support a journal"),
    (["--storage", "grpc://127.0.0.1:13000"], "--storage: 'grpc://127.0.0.1:13000' is a proxy itself"),
    (["--storage", "postgresql+nodriver://u:hunter2@db/x"], "--storage: unknown driver"),
    (["--storage", "sqlite:///x.db", "--port", "70000"], "--port: 70000 is not a port number"),
    (["--storage", "sqlite:///x.db", "--host", "host.invalid"], "--host: 'host.invalid' is not an address"),
])
def test_bad_proxy_options_are_exit_2(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["storage-proxy", *args, *([] if "--port" in args else ["--port", str(free_port())])])
    assert result.exit_code == 2 and result.output.startswith(says), result.output
    assert "hunter2" not in result.output and not list(tmp_path.iterdir())


def test_a_proxy_whose_database_does_not_answer_is_exit_1_without_its_password(tmp_path, monkeypatch):
    pytest.importorskip("grpc", reason=NEEDS_GRPC)
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg://archsearch:hunter2@127.0.0.1:1/nothing"  # nothing listens on port 1
    result = runner.invoke(app, ["storage-proxy", "--storage", url, "--host", "127.0.0.1", "--port", str(free_port())])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: RuntimeError: cannot open storage postgresql+psycopg://archsearch:***@")
    assert "hunter2" not in result.output and "storage proxy on" not in result.output


# --- URLs and failures -------------------------------------------------------------------------

BAD_URLS = [
    ("grpc://proxy-host", "names no port"),
    ("grpc://proxy-host:port", "the port 'port' is not a number"),
    ("grpc://proxy-host:0", "the port '0' is not a number from 1 to 65535"),
    ("grpc://proxy-host:70000", "the port '70000' is not a number from 1 to 65535"),
    ("grpc://:13000", "names no host"),
    ("grpc://::1:13000", "write an IPv6 host in brackets"),
    ("grpc://user:hunter2@proxy-host:13000", "takes no user or password"),
    ("grpc://proxy-host:13000/archsearch", "names no database, path or options"),
]


@pytest.mark.parametrize("command", ["run", "results", "report"])
@pytest.mark.parametrize("url,says", BAD_URLS)
def test_bad_grpc_urls_are_exit_2_and_write_nothing(tmp_path, monkeypatch, command, url, says):
    monkeypatch.chdir(tmp_path)
    path = write_space(tmp_path, space("bad-url", trials=1))
    args = ["run", str(path), "--results-dir", "results"] if command == "run" else [command, "--study", "s"]
    result = runner.invoke(app, [*args, "--storage", url])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("--storage: ") and says in result.output and len(result.output.splitlines()) == 1
    assert "hunter2" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad-url.yaml"]


@pytest.mark.parametrize("command", ["run", "results"])
def test_a_proxy_that_is_down_is_exit_1_in_one_line(tmp_path, monkeypatch, command):
    pytest.importorskip("grpc", reason=NEEDS_GRPC)
    import archsearch.search.proxy as proxy_module

    monkeypatch.setattr(proxy_module, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.chdir(tmp_path)
    url = f"grpc://127.0.0.1:{free_port()}"  # nothing listens there
    path = write_space(tmp_path, space("down", trials=1))
    args = ["run", str(path), "--results-dir", "results"] if command == "run" else ["results", "--study", "s"]
    result = runner.invoke(app, [*args, "--storage", url])
    assert result.exit_code == 1, result.output
    *before, error, hint = result.output.splitlines()  # `run` says what data it read first
    assert error == (f"error: RuntimeError: no storage proxy answers at {url} (waited 0.5 s); start one there with "
                     f"`archsearch storage-proxy --storage DATABASE_URL --port {url.rsplit(':', 1)[1]}`")
    assert hint == "(run with --debug for the traceback)"
    assert len(before) == (command == "run") and "error" not in " ".join(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["down.yaml"]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_proxy_lost_mid_study_is_retried_then_told_in_one_line(monkeypatch):
    """UNAVAILABLE is a moment's outage: every call is repeated before the error goes on."""
    pytest.importorskip("grpc", reason=NEEDS_GRPC)
    import optuna

    import archsearch.search.retry as retry
    from archsearch.search.storage import describe_error, is_transient

    monkeypatch.setattr(retry, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    inner = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=free_port())  # connected lazily: no check
    calls = []
    real = inner.get_all_studies
    monkeypatch.setattr(inner, "get_all_studies", lambda: calls.append(1) or real())
    with pytest.raises(Exception) as exc:
        retry.RetryingStorage(inner).get_all_studies()
    assert len(calls) == 4 and is_transient(exc.value)
    assert describe_error(exc.value).startswith("gRPC UNAVAILABLE: failed to connect to all addresses")
    assert "\n" not in describe_error(exc.value)


def test_without_grpcio_the_commands_say_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` raises ImportError
    monkeypatch.chdir(tmp_path)
    path = write_space(tmp_path, space("no-grpc", trials=1))
    for args in (["run", str(path), "--results-dir", "results", "--storage", "grpc://127.0.0.1:13000"],
                 ["results", "--storage", "grpc://127.0.0.1:13000", "--study", "s"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output == ("--storage: a grpc:// storage needs grpcio and protobuf, which are not installed: "
                                 "pip install -e '.[grpc]'\n")
    result = runner.invoke(app, ["storage-proxy", "--storage", "sqlite:///backend.db"])
    assert result.exit_code == 2
    assert result.output == ("storage-proxy: the storage proxy needs grpcio and protobuf, which are not installed: "
                             "pip install -e '.[grpc]'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-grpc.yaml"]

