"""What `archsearch run --workers N` says and exits with when its workers fail, with real
processes: every worker killed, a worker that raises (its database connection refused), and the
password kept out of every line."""

import os
import signal
import time

import pytest

from test_workers import POSTGRES_URL, archsearch, space, study_trials, write_space

pytestmark = pytest.mark.slow


def wait_for_training_workers(study_dir, count: int, storage=None, name=None, timeout: float = 120) -> set[int]:
    """Poll the storage until `count` workers are training a trial; return their pids."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            trials = study_trials(study_dir) if storage is None else _trials(storage, name)
            pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in trials
                    if t.state.name == "RUNNING" and t.user_attrs.get("phase") == "training"}
            if len(pids) >= count:
                return pids
        except Exception:  # the study may not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} workers started training")


def _trials(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_every_worker_killed_is_a_failed_run_that_names_them(tmp_path):
    path = write_space(tmp_path, space("all-killed", steps=400, trials=4))
    proc = archsearch("run", str(path), "--results-dir", str(tmp_path), "--workers", "2")
    pids = wait_for_training_workers(tmp_path / "all-killed", 2)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    for pid in pids:
        assert any(line.startswith("worker ") and line.endswith(f"(pid {pid}) was killed by SIGKILL")
                   for line in out.splitlines()), out
    assert "Traceback" not in out


@pytest.mark.skipif(not POSTGRES_URL, reason="set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
def test_workers_whose_database_connection_is_refused_print_one_line_each(tmp_path):
    """The database refuses the study's role mid-trial (as when a server restarts with other
    credentials): each worker retries, gives up, and says so in one line; the parent exits 1."""
    import sqlalchemy

    role, secret = f"archsearch_faults_{os.getpid()}", "hunter2-secret-pw"
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    head, rest = POSTGRES_URL.split("://", 1)
    url = f"{head}://{role}:{secret}@{rest.split('@', 1)[-1]}"  # trust auth accepts any password
    name = f"refused-{os.getpid()}-{int(time.time())}"
    with admin.connect() as db:
        db.execute(sqlalchemy.text(f"CREATE ROLE {role} LOGIN SUPERUSER"))
    try:
        path = write_space(tmp_path, space(name, steps=400, trials=4))
        proc = archsearch("run", str(path), "--results-dir", str(tmp_path), "--storage", url, "--workers", "2")
        wait_for_training_workers(tmp_path / name, 2, storage=POSTGRES_URL, name=name)
        with admin.connect() as db:
            db.execute(sqlalchemy.text(f"ALTER ROLE {role} NOLOGIN"))
            db.execute(sqlalchemy.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"))
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 1, out
        lines = out.strip().splitlines()
        for index in (0, 1):
            (line,) = [x for x in lines if x.startswith(f"worker {index}: error: ")]
            assert line.startswith(f"worker {index}: error: OperationalError: ") and "not permitted to log in" in line, out
        assert "Traceback" not in out and secret not in out and len(lines) < 20, out
    finally:
        with admin.connect() as db:
            db.execute(sqlalchemy.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"))
            db.execute(sqlalchemy.text(f"REASSIGN OWNED BY {role} TO CURRENT_USER"))  # tables others share stay
            db.execute(sqlalchemy.text(f"DROP ROLE {role}"))
        admin.dispose()
        try:
            import optuna

            optuna.delete_study(study_name=name, storage=POSTGRES_URL)
        except Exception:
            pass
