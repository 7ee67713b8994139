"""Many workers on one study: trials per second sustained, and nothing lost when workers die.

    python benchmarks/many_workers.py                                   # 16 and 32 workers, PostgreSQL (+ proxy)
    python benchmarks/many_workers.py --workers 4 --trials-per-worker 3 # a quick look
    python benchmarks/many_workers.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/test --no-proxy

Each worker is its own `python benchmarks/many_workers.py --worker ...` process running
archsearch.run_study against the shared storage, as one machine of a cluster runs `archsearch
run --storage URL`: the real engine (ask, sampling, duplicate lookup, heartbeats, stale-trial
retry, the tell with every user attribute, its own study folder), with `archsearch.trial.run_trial`
replaced by benchmarks/search_overhead.py's synthetic objective plus `--trial-seconds` of sleep
(a trial's GPU time, which uses no CPU here), so that 32 workers fit on a small machine: they
are bounded by the storage and the search layer, not by training. Loopback only; every run is
bounded by `--timeout`.

For each storage (PostgreSQL directly, and through Optuna's gRPC proxy started by `archsearch
storage-proxy` when grpcio is installed) and each worker count it prints: the wall time and trials
per second over it (worker start-up included), the sustained trials per second (from the first
trial's start to the last one's end, as the storage dates them), and the checks: exactly the asked-for number of counted trials, every trial number
unique, none left RUNNING. Then the same with 4 workers SIGKILLed mid-run: their running trials
must be failed as `worker died` and retried by the survivors, and the study must still reach its
count.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()


def worker(args) -> int:
    """One worker process: the real engine with a synthetic objective that sleeps like a GPU trial."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE.parent))
    import archsearch.trial as trial_module
    from archsearch import run_study
    from archsearch.search.study import quiet_optuna
    from search_overhead import space_for, synthetic_result

    def run_trial(config, context, train_cfg, measure_cfg, **kwargs):
        time.sleep(args.trial_seconds)
        return synthetic_result(config, train_cfg)

    trial_module.run_trial = run_trial
    quiet_optuna()
    space = space_for("tpe", args.name)
    space = space.model_copy(update={"study": space.study.model_copy(update={
        "heartbeat_interval": 2.0, "grace_period": 10.0, "max_retries": 3})})
    run_study(space, args.results, storage=args.storage, trials=args.trials)
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(storage: str) -> tuple[subprocess.Popen, str] | None:
    try:
        import grpc  # noqa: F401
    except ImportError:
        print("# grpcio not installed: no proxy runs (pip install -e '.[grpc]')", flush=True)
        return None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "archsearch.cli", "storage-proxy", "--storage", storage,
                             "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"grpc://127.0.0.1:{port}"
        if proc.poll() is not None:
            print(f"# the proxy exited: {proc.stdout.read()[-500:]}", flush=True)
            return None
        time.sleep(0.5)
    proc.kill()
    return None


def running_trial(storage: str, name: str, pid: int) -> bool:
    """Whether process `pid` holds a RUNNING trial of the study (its heartbeat attribute names it)."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # not created yet
        return False
    return any(str(t.user_attrs.get("worker", "")).endswith(f":{pid}")
               for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def check(storage: str, name: str, target: int) -> dict:
    import optuna

    from archsearch.search.worker import count_trials

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    counted = count_trials(study)[0]
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    died = [t for t in trials if str(t.user_attrs.get("fail_reason", "")).startswith("worker died")]
    retried = sum(1 for t in trials if t.user_attrs.get("retry_of") is not None and t.state.is_finished())
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    return {"sustained_per_s": counted / span if span > 0 else float("nan"), "counted": counted, "target": target, "unique": len(set(numbers)) == len(numbers), "running": running,
            "died": len(died), "retried": retried, "total": len(trials)}


def run(label: str, storage: str, direct: str, workers: int, per_worker: int, trial_seconds: float, kill: int,
        timeout: float, tmp: Path) -> dict:
    import optuna

    name = f"many-{label}-{workers}-{'kill' if kill else 'ok'}-{os.getpid()}"
    target = workers * per_worker
    cmd = [sys.executable, str(HERE), "--worker", "--storage", storage, "--name", name, "--trials", str(target),
           "--trial-seconds", str(trial_seconds)]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd + ["--results", str(tmp / f"w{i}")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(workers)]
    killed = []
    if kill:  # each victim is killed while it runs a trial, so that one must be retried
        victims = procs[:kill]
        deadline = time.perf_counter() + timeout / 2
        while victims and time.perf_counter() < deadline:
            for proc in [v for v in victims if running_trial(direct, name, v.pid)]:
                proc.send_signal(signal.SIGKILL)
                killed.append(proc)
                victims.remove(proc)
            time.sleep(0.2)
    errors = []
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            errors.append("timeout")
        if proc not in killed and proc.returncode not in (0, None):
            errors.append(proc.stderr.read()[-300:])
    wall = time.perf_counter() - start
    result = {"storage": label, "workers": workers, "killed": len(killed), "wall_s": wall,
              "trials_per_s": target / wall, **check(direct, name, target), "errors": errors}
    ok = (result["counted"] == target and result["unique"] and result["running"] == 0 and not errors
          and (not kill or result["died"] >= 1))
    result["ok"] = ok
    print(f"{label:<11} {workers:>3} workers {len(killed):>2} killed  {wall:7.1f} s  {result['trials_per_s']:6.2f} "
          f"trials/s ({result['sustained_per_s']:6.2f} from first start to last end)  counted {result['counted']}/{target}  unique {result['unique']}  running {result['running']}  "
          f"died {result['died']} retried {result['retried']}  {'ok' if ok else 'FAILED'}"
          + (f"  errors: {errors[:2]}" if errors else ""), flush=True)
    optuna.delete_study(study_name=name, storage=direct)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--storage", default=os.environ.get("ARCHSEARCH_TEST_POSTGRES_URL",
                                                            "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--workers", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--trials-per-worker", type=int, default=6)
    parser.add_argument("--trial-seconds", type=float, default=1.0, help="each synthetic trial sleeps this long")
    parser.add_argument("--kill", type=int, default=4, help="workers SIGKILLed in the second run of each count")
    parser.add_argument("--timeout", type=float, default=300, help="the most one run may take (s)")
    parser.add_argument("--no-proxy", action="store_true", help="PostgreSQL directly only")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    sys.path.insert(0, str(ROOT))
    from archsearch.urls import redact

    print(f"# storage {redact(args.storage)}; {os.cpu_count()} CPUs; each trial sleeps {args.trial_seconds:g} s; "
          f"{args.trials_per_worker} trials per worker", flush=True)
    storages = [("postgresql", args.storage, None)]
    proxy = None if args.no_proxy else start_proxy(args.storage)
    if proxy is not None:
        storages.append(("grpc-proxy", proxy[1], proxy[0]))
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, url, _ in storages:
                for n in args.workers:
                    for kill in (0, min(args.kill, n - 1)):
                        results.append(run(label, url, args.storage, n, args.trials_per_worker, args.trial_seconds,
                                           kill, args.timeout, Path(tmp) / f"{label}-{n}-{kill}"))
    finally:
        if proxy is not None:
            proxy[0].send_signal(signal.SIGTERM)
            proxy[0].wait(timeout=30)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
