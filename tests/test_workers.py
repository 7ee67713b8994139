"""Scale-out and fault tolerance, with real processes: workers sharing a study, a worker killed
with SIGKILL, SIGINT, PostgreSQL, passwords kept out of every output, and early stopping's rung
records shared between processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

# Real processes and real trials: minutes, not seconds. They run in CI with `pytest -m slow`.
pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get("ARCHSEARCH_TEST_POSTGRES_URL")

# Tiny trials: 8×8 digits, 8 channels. `steps` sets how long one trial trains.
def space(name: str, steps: int = 4, **study) -> dict:
    return {
        "study": {"name": name, "trials": 4, "sampler": {"kind": "random"}, "device": "cpu",
                  "heartbeat_interval": 0.5, "grace_period": 4, **study},
        "data": {"source": "digits", "image_size": 8},
        "train": {"steps": steps, "batch_size": 8, "log_every": 2},
        "eval": {"num_images": 16, "timesteps": 5, "curve_points": 0},
        "measure": {"warmup_steps": 1, "repeats": 3, "infer": False, "latency": False, "flops": False},
        "architecture": {
            "levels": [{"width": {"choice": [8, 16]}, "blocks": 1}, {"width": 8, "blocks": 1}],
            "block": {"norm": {"groups": 4}, "activation": {"choice": ["silu", "gelu", "relu", "mish"]}},
            "middle": {"blocks": 1, "attention": False},
            "embedding": {"dim": 8},
        },
    }


def write_space(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / f"{data['study']['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def archsearch(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "archsearch.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kwargs)


def run_to_end(*args, timeout: float = 240) -> tuple[int, str]:
    proc = archsearch(*args)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def table(study_dir: Path) -> pd.DataFrame:
    return pd.read_csv(study_dir / "trials.csv")


def study_trials(study_dir: Path):
    from archsearch.results import open_study

    return open_study(study_dir).get_trials(deepcopy=False)


def wait_for_training(study_dir: Path, timeout: float = 120):
    """Poll the journal until some trial is training; return it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (study_dir / "optuna.journal").exists():
            try:
                for t in study_trials(study_dir):
                    if t.state.name == "RUNNING" and t.user_attrs.get("phase") == "training":
                        return t
            except Exception:  # the study may not exist yet
                pass
        time.sleep(0.2)
    raise AssertionError("no trial started training")


def test_two_workers_share_one_embedded_study(tmp_path):
    path = write_space(tmp_path, space("pair", trials=6))
    code, out = run_to_end("run", str(path), "--results-dir", str(tmp_path), "--workers", "2")
    assert code == 0, out
    df = table(tmp_path / "pair")
    assert len(df) == 6 and df["number"].tolist() == list(range(6))
    assert (df["state"] == "COMPLETE").all()
    workers = {t.user_attrs["worker"] for t in study_trials(tmp_path / "pair")}
    assert len(workers) == 2, workers  # both processes did work
    assert "database is locked" not in out


def test_a_killed_worker_trial_is_failed_and_retried(tmp_path):
    path = write_space(tmp_path, space("killed", steps=400, trials=3))
    proc = archsearch("run", str(path), "--results-dir", str(tmp_path), "--workers", "2")
    victim = wait_for_training(tmp_path / "killed")
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out  # the other worker finished the study: a success, which says what happened
    assert any(line.startswith("warning: worker ") and line.endswith(f"(pid {pid}) was killed by SIGKILL")
               for line in out.splitlines()), out
    trials = {t.number: t for t in study_trials(tmp_path / "killed")}
    dead = trials[victim.number]
    assert dead.state.name == "FAIL"
    assert dead.user_attrs["fail_reason"].startswith("worker died")
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == dead.params
    counted = [t for t in trials.values() if t.state.name == "COMPLETE"]
    assert len(counted) == 3  # the study still reaches its count
    df = table(tmp_path / "killed")
    assert df.loc[df["number"] == victim.number, "fail_reason"].iloc[0].startswith("worker died")


def test_a_killed_single_run_is_recovered_by_the_next_run(tmp_path):
    path = write_space(tmp_path, space("resumed", steps=400, trials=2))
    proc = archsearch("run", str(path), "--results-dir", str(tmp_path))
    victim = wait_for_training(tmp_path / "resumed")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    code, out = run_to_end("run", str(path), "--results-dir", str(tmp_path))
    # The killed trial's process is gone from this host: found at once, not after the grace period.
    assert code == 0, out
    trials = study_trials(tmp_path / "resumed")
    assert trials[victim.number].user_attrs["fail_reason"].startswith("worker died: process")
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


def test_sigint_records_the_trial_and_the_study_resumes(tmp_path):
    path = write_space(tmp_path, space("interrupted", steps=400, trials=2))
    proc = archsearch("run", str(path), "--results-dir", str(tmp_path))
    victim = wait_for_training(tmp_path / "interrupted")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    df = table(tmp_path / "interrupted")
    row = df[df["number"] == victim.number].iloc[0]
    assert row["state"] == "FAIL" and row["fail_reason"] == "interrupted"
    code, out = run_to_end("run", str(path), "--results-dir", str(tmp_path))
    assert code == 0, out
    trials = study_trials(tmp_path / "interrupted")
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
    assert any(t.user_attrs.get("retry_of") == victim.number for t in trials)  # the interrupted config ran again


def test_sigterm_exits_143(tmp_path):
    path = write_space(tmp_path, space("terminated", steps=400, trials=1))
    proc = archsearch("run", str(path), "--results-dir", str(tmp_path))
    wait_for_training(tmp_path / "terminated")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert (table(tmp_path / "terminated")["fail_reason"] == "interrupted").any()


@pytest.mark.skipif(not POSTGRES_URL, reason="set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
def test_two_workers_on_postgres_complete_one_study(tmp_path):
    import optuna

    name = f"pg-{os.getpid()}-{int(time.time())}"
    path = write_space(tmp_path, space(name, trials=4))
    try:
        code, out = run_to_end("run", str(path), "--results-dir", str(tmp_path), "--storage", POSTGRES_URL, "--workers", "2")
        assert code == 0, out
        study = optuna.load_study(study_name=name, storage=POSTGRES_URL)
        trials = study.get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == list(range(4))
        assert all(t.state.name == "COMPLETE" for t in trials)
        assert len({t.user_attrs["worker"] for t in trials}) == 2
        code, out = run_to_end("results", "--storage", POSTGRES_URL, "--study", name, "--out", str(tmp_path / "remote"))
        assert code == 0, out
        assert len(table(tmp_path / "remote")) == 4
    finally:
        try:
            optuna.delete_study(study_name=name, storage=POSTGRES_URL)
        except Exception:
            pass


@pytest.mark.skipif(not POSTGRES_URL, reason="set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
def test_a_storage_password_appears_nowhere(tmp_path):
    import optuna

    secret = "hunter2-secret-pw"
    head, rest = POSTGRES_URL.split("://", 1)
    user_host = rest.split("@", 1)[-1]
    user = rest.split("@", 1)[0].split(":")[0] if "@" in rest else "postgres"
    url = f"{head}://{user}:{secret}@{user_host}"  # trust auth accepts any password
    name = f"pw-{os.getpid()}-{int(time.time())}"
    path = write_space(tmp_path, space(name, trials=1))
    try:
        code, out = run_to_end("run", str(path), "--results-dir", str(tmp_path), "--storage", url)
        assert code == 0, out
        assert secret not in out and "***" in out
        code, out2 = run_to_end("results", "--storage", url, "--study", "nope")
        assert code == 2 and secret not in out2
        bad = url.replace(user_host.split("/")[0], "127.0.0.1:1")  # nothing listens there
        code, out3 = run_to_end("run", str(path), "--results-dir", str(tmp_path / "x"), "--storage", bad)
        assert code != 0 and secret not in out3
        for file in tmp_path.rglob("*"):
            if file.is_file() and file.suffix != ".parquet":
                assert secret not in file.read_text(errors="ignore"), file
    finally:
        try:
            optuna.delete_study(study_name=name, storage=POSTGRES_URL)
        except Exception:
            pass


# --- early stopping across processes (issue 11) ------------------------------------------------
# Two good small networks, then one dominated at every rung (wider, a learning rate that hardly
# moves it). Each process runs one of the first two; the third starts when one of them ends, the
# other being well past the first rung by then, so at its rung it meets both records, one written
# by another process, and is stopped by them: alone with one of them it would go on
# (min_trials_at_rung 3). Objectives without timing, so the decision is exact.
ASHA = {"kind": "asha", "min_steps": 10, "eta": 3, "min_trials_at_rung": 3}
GOOD_PAIR = [{"architecture.levels.0.width": 8, "architecture.block.activation": a, "train.lr": 3e-2} for a in ("silu", "gelu")]
DOMINATED = {"architecture.levels.0.width": 16, "architecture.block.activation": "silu", "train.lr": 1e-5}


def asha_space(name: str) -> dict:
    data = space(name, steps=200, trials=3, stopping=ASHA)
    data["train"]["lr"] = {"choice": [3e-2, 1e-5]}
    data["objectives"] = [{"metric": "val_loss"}, {"metric": "params"}]
    return data


def enqueue_asha_trials(data: dict, storage: str | None, study_dir: Path) -> None:
    from archsearch.schema.space import space_from_dict
    from archsearch.search.storage import open_storage
    from archsearch.search.study import create_study

    study = create_study(space_from_dict(data), open_storage(storage, study_dir))
    for params in [*GOOD_PAIR, DOMINATED]:
        study.enqueue_trial(params)


def assert_stopped_by_both_processes(trials) -> None:
    first, second, third = sorted(trials, key=lambda t: t.number)
    assert [first.state.name, second.state.name] == ["COMPLETE", "COMPLETE"]
    assert first.user_attrs["worker"] != second.user_attrs["worker"]  # one each
    assert third.state.name == "PRUNED", third.user_attrs.get("fail_reason")
    assert third.user_attrs["stop_reason"] == "stopped at rung 0 (step 10): position 3 of 3 at this rung (keeps the top 1)"
    assert third.user_attrs["steps_trained"] == 10 and third.user_attrs["rung_0"]["step"] == 10
    assert all(t.user_attrs["rung_2"]["step"] == 90 for t in (first, second))


def test_two_workers_share_rung_records_a_trial_is_stopped_by_both(tmp_path):
    data = asha_space("asha-pair")
    enqueue_asha_trials(data, None, tmp_path / "asha-pair")
    code, out = run_to_end("run", str(write_space(tmp_path, data)), "--results-dir", str(tmp_path), "--workers", "2")
    assert code == 0, out
    assert_stopped_by_both_processes(study_trials(tmp_path / "asha-pair"))
    df = table(tmp_path / "asha-pair")
    assert df["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED"] and df["steps_trained"].tolist() == [200, 200, 10]
    assert {"val_loss_at_10", "val_loss_at_30", "val_loss_at_90", "stop_reason"} <= set(df.columns)


@pytest.mark.skipif(not POSTGRES_URL, reason="set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
def test_two_processes_on_postgres_share_rung_records_a_trial_is_stopped_by_both(tmp_path):
    import optuna

    name = f"asha-pg-{os.getpid()}-{int(time.time())}"
    data = asha_space(name)
    path = write_space(tmp_path, data)
    try:
        enqueue_asha_trials(data, POSTGRES_URL, tmp_path / name)
        procs = [archsearch("run", str(path), "--results-dir", str(tmp_path), "--storage", POSTGRES_URL) for _ in range(2)]
        outs = [p.communicate(timeout=240)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert_stopped_by_both_processes(optuna.load_study(study_name=name, storage=POSTGRES_URL).get_trials())
    finally:
        try:
            optuna.delete_study(study_name=name, storage=POSTGRES_URL)
        except Exception:
            pass
