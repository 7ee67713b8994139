"""How well does each cheap way of ranking candidates predict long-training truth? (issue 27)

    python benchmarks/proxy_fidelity.py                       # reads benchmarks/data/truth.parquet
    python benchmarks/proxy_fidelity.py --table other.parquet

Reads the ground-truth table that benchmarks/record_truth.py records (quickstart architectures
trained for 2,000 steps) and prints, for every proxy, against both truths (the validation loss
and the digits Fréchet distance at the last step):

- Kendall's τ and Spearman's ρ over the architectures, with percentile-bootstrap 95% intervals
  (archsearch.verify.stats, 2,000 resamples);
- the recall of the true two-objective front (truth against the re-timed training throughput)
  by the front the proxy picks (proxy against the same throughput);
- the compute the proxy spends per architecture: training steps, and sampling forward passes.

The proxies: parameter count, FLOPs and throughput alone (zero-cost); the validation loss at 20,
60, 200 and 600 steps; the FD at 60, 200 and 600 steps; a power law with offset fitted to the
first k steps' losses and extrapolated to the last step (archsearch.extrapolate), k = 20, 60,
200; and, as the ceiling no proxy can pass, the agreement between two training seeds of the same
architectures at each of those steps. Runs offline in seconds; the table may be partial (a
recording in progress): the printout says how many architectures it ranks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from archsearch.extrapolate import extrapolate
from archsearch.pareto import pareto_mask
from archsearch.verify.stats import agreement, front_agreement, kendall_tau, spearman_rho

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "data" / "truth.parquet"
LAST = 2000
SAMPLING = 1000 * 50  # forward passes of one FD: 1,000 samples x 50 DDIM steps


def loss_at(df: pd.DataFrame, step: int) -> pd.Series:
    return pd.to_numeric(df[f"val_loss_at_{step}"], errors="coerce")


def extrapolated(df: pd.DataFrame, k: int) -> pd.Series:
    """Each row's loss at LAST predicted from its losses up to step k."""
    steps = [int(c.rsplit("_", 1)[1]) for c in df.columns if c.startswith("val_loss_at_")]
    early = sorted(s for s in steps if s <= k)
    out = []
    for _, row in df.iterrows():
        losses = [row[f"val_loss_at_{s}"] for s in early]
        ok = [(s, v) for s, v in zip(early, losses) if v is not None and np.isfinite(v)]
        out.append(extrapolate(*zip(*ok), LAST) if len(ok) >= 3 else np.nan)
    return pd.Series(out, index=df.index)


def proxies(df: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """(name, compute per architecture, values: lower is better)."""
    rows = [("parameter count", "0", df["params"].astype(float)),
            ("FLOPs", "0", df["flops"].astype(float)),
            ("throughput alone (higher first)", "timing only", -df["train_throughput"].astype(float))]
    rows += [(f"val_loss at step {s}", f"{s} steps", loss_at(df, s)) for s in (20, 60, 200, 600)]
    rows += [(f"FD at step {s}", f"{s} steps + {SAMPLING:,} passes", pd.to_numeric(df[f"fd_at_{s}"], errors="coerce"))
             for s in (60, 200, 600) if f"fd_at_{s}" in df.columns]
    rows += [(f"power law fitted to steps <= {k}", f"{k} steps", extrapolated(df, k)) for k in (20, 60, 200)]
    return rows


def front(values: pd.Series, speed: pd.Series, numbers: pd.Series) -> list:
    ok = values.notna() & speed.notna()
    mask = pareto_mask(np.column_stack([values[ok], speed[ok]]), ["minimize", "maximize"])
    return list(numbers[ok][mask])


def cell(x: pd.Series, y: pd.Series) -> str:
    ok = x.notna() & y.notna()
    if ok.sum() < 3:
        return "–"
    tau = agreement("τ", kendall_tau, x[ok].to_numpy(), y[ok].to_numpy())
    rho = agreement("ρ", spearman_rho, x[ok].to_numpy(), y[ok].to_numpy())
    return f"{tau.format()} {rho.format()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    args = parser.parse_args(argv)
    if not args.table.exists():
        print(f"error: no truth table at {args.table}: record one with python benchmarks/record_truth.py", file=sys.stderr)
        return 1
    table = pd.read_parquet(args.table)
    table = table[table["outcome"] == "completed"]
    first = table[table["seed"] == 0].reset_index(drop=True)
    truth_loss, truth_fd = loss_at(first, LAST), pd.to_numeric(first[f"fd_at_{LAST}"], errors="coerce")
    speed, numbers = first["train_throughput"].astype(float), first["config_hash"]
    loss_front, fd_front = front(truth_loss, speed, numbers), front(truth_fd, speed, numbers)
    timed = "re-timed alone" if first["speed_phase"].all() else "as timed while recording (the speed phase has not run)"
    print(f"# {len(first)} architectures ({int(first['in_quickstart'].sum())} of the quickstart's own), "
          f"{int((table['seed'] == 1).sum())} trained with a second seed; truth at step {LAST}; throughput {timed}")
    print(f"# true fronts (truth vs throughput): {len(loss_front)} in loss, {len(fd_front)} in FD")
    print(f"{'proxy':36} {'compute':26} {'vs long-run loss':44} {'front recall':>12}  {'vs long-run FD':44} "
          f"{'front recall':>12}")
    for name, compute, values in proxies(first):
        picked = front(values, speed, numbers) if values.notna().any() else []
        # the share of the true front that the proxy's front finds (front_agreement's precision, seen from the truth)
        recall_loss = front_agreement(picked, loss_front)[1] if picked else np.nan
        recall_fd = front_agreement(picked, fd_front)[1] if picked else np.nan
        print(f"{name:36} {compute:26} {cell(values, truth_loss):44} {recall_loss:>12.0%}  "
              f"{cell(values, truth_fd):44} {recall_fd:>12.0%}")
    second = table[table["seed"] == 1].set_index("config_hash")
    both = first.set_index("config_hash").merge(second, left_index=True, right_index=True, suffixes=("", "_seed1"))
    for step in (20, 60, 200, 600, LAST):
        column = f"val_loss_at_{step}"
        if column in both.columns:
            print(f"{'seed 0 vs seed 1, loss at ' + str(step):36} {'(the ceiling)':26} "
                  f"{cell(both[column], both[column + '_seed1']):44}")
    if f"fd_at_{LAST}" in both.columns:
        print(f"{'seed 0 vs seed 1, FD at ' + str(LAST):36} {'(the ceiling)':26} {'':44} {'':>12}  "
              f"{cell(both[f'fd_at_{LAST}'], both[f'fd_at_{LAST}_seed1']):44}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
