"""benchmarks/proxy_fidelity.py on a hand-made truth table whose answers are known."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import proxy_fidelity  # noqa: E402


def _table(tmp_path) -> Path:
    steps = [5, 10, 15, *range(20, 2001, 20)]
    rows = []
    for i in range(6):  # architecture i converges to 0.05 + 0.01 i; a faster network is a worse one
        a, speed = 0.05 + 0.01 * i, 100.0 * (i + 1)
        row = {"config_hash": f"h{i}", "seed": 0, "in_quickstart": i < 2, "outcome": "completed", "params": 1000 * (6 - i),
               "flops": 10 * (i + 1), "train_throughput": speed, "speed_phase": True,
               **{f"val_loss_at_{s}": a + 2.0 * s ** -0.7 for s in steps},
               **{f"fd_at_{s}": 10 * a + 1 / s for s in (60, 200, 600, 2000)}}
        rows.append(row)
    rows.append({**rows[0], "seed": 1})
    rows.append({**rows[3], "seed": 1})
    rows.append({**rows[5], "seed": 1})
    path = tmp_path / "truth.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_a_proxy_that_is_the_truth_ranks_perfectly_and_finds_the_whole_front(tmp_path, capsys):
    assert proxy_fidelity.main(["--table", str(_table(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "# 6 architectures (2 of the quickstart's own), 3 trained with a second seed" in out
    assert "# true fronts (truth vs throughput): 6 in loss, 6 in FD" in out  # every one trades loss for speed
    lines = {line[:36].strip(): line for line in out.splitlines()}
    # the loss at any step orders them as the truth does; the extrapolation too; params reversed
    assert "τ = 1 [1, 1] ρ = 1 [1, 1]" in lines["val_loss at step 60"]
    assert "τ = 1 [1, 1]" in lines["power law fitted to steps <= 20"]
    # fewer parameters and more speed both point at the last one: the proxy's front is it alone, 1 of 6
    assert "τ = -1 [-1, -1]" in lines["parameter count"] and lines["parameter count"].count("17%") == 2
    assert "τ = 1 [1, 1]" in lines["seed 0 vs seed 1, loss at 2000"]


def test_the_extrapolated_loss_is_the_power_law_at_the_last_step(tmp_path):
    df = pd.read_parquet(_table(tmp_path))
    first = df[df.seed == 0].reset_index(drop=True)
    predicted = proxy_fidelity.extrapolated(first, 60)
    assert np.allclose(predicted, 0.05 + 0.01 * np.arange(6) + 2.0 * 2000 ** -0.7, rtol=1e-2)


def test_a_missing_table_says_how_to_record_one(tmp_path, capsys):
    assert proxy_fidelity.main(["--table", str(tmp_path / "none.parquet")]) == 1
    assert "python benchmarks/record_truth.py" in capsys.readouterr().err
