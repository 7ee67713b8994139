"""Scale-out and fault tolerance, with real processes: workers sharing a study, a worker killed
with SIGKILL, SIGINT, PostgreSQL, and passwords kept out of every output."""

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
