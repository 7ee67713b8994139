"""Record the learning curves that benchmarks/replay_search.py replays: a search benchmark table.

    python benchmarks/record_curves.py                      # both phases, into benchmarks/data/
    python benchmarks/record_curves.py --phase speed        # re-time throughput only (a quiet machine)

Distinct architectures are sampled from the digits space (search_spaces/digits.yaml: the
quickstart's data, 16×16 digits, and budget over more knobs; the quickstart's space when the
table was recorded) with archsearch's own sampler and planner, and each is trained for five times the
quickstart's budget (300 steps instead of 60) with the fixed-noise validation loss recorded every
10 steps: every rung a replayed scheduler could ask for (`min_steps` a multiple of 10) is in the
table, and so is the final score.

Two phases, because they need different machines:
- **curves**: the losses are deterministic (fixed seeds, fixed validation noise; they repeat
  exactly on one machine whatever else runs), so this phase may share the machine. Each finished
  architecture is written at once, and a rerun skips those already in the table.
- **speed**: training throughput, inference throughput, params and FLOPs of every recorded
  architecture, timed one after another with archsearch.measure's protocol. Throughput depends on
  the machine's load: run it alone, and see the load average it records. (The curves phase
  keeps each trial's own measurement until then; `speed_phase` says which a row holds.)

Output: `benchmarks/data/curves.parquet` (one row per architecture: `config_hash`, the config
columns named as in a results table, `params`, `flops`, `train_throughput`, `infer_throughput`,
`val_loss_at_<step>` for step 10, 20, ..., 300) and `benchmarks/data/curves.json` (how it was
recorded: command, machine, torch, wall time and load of each phase).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from archsearch.data import load_data
from archsearch.device import device_info, resolve_device
from archsearch.io import atomic_write, atomic_write_json
from archsearch.measure import measure
from archsearch.nn import build_unet
from archsearch.schema.measure import MeasureConfig
from archsearch.schema.paths import ARCHITECTURE, flatten, qualified
from archsearch.schema.space import load_space
from archsearch.search.objective import config_hash
from archsearch.search.sampling import instantiate, random_suggester
from archsearch.schema.loading import unet_config_from_dict
from archsearch.settings import resolve_run_settings
from archsearch.trial import TrialContext, run_trial

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "digits.yaml"
STEPS, EVERY = 300, 10  # five times the quickstart's 60 steps; a validation every 10 steps
SETS = {"train.steps": str(STEPS), "eval.curve_points": str(STEPS // EVERY - 1)}  # evaluations at 10, 20, ..., 290, then 300


def curve_columns() -> list[str]:
    return [f"val_loss_at_{s}" for s in range(EVERY, STEPS + 1, EVERY)]


def sample_distinct(space, n: int, seed: int) -> list:
    """`n` distinct planned configs, in the order the seeded sampler draws them."""
    suggest, seen, out = random_suggester(seed), set(), []
    for _ in range(100 * n):
        config = unet_config_from_dict(instantiate(space.architecture, suggest, ARCHITECTURE), prefix=ARCHITECTURE)
        key = config_hash(config)
        if key not in seen:
            seen.add(key)
            out.append(config)
            if len(out) == n:
                return out
    raise SystemExit(f"the space holds fewer than {n} distinct architectures")


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def write_table(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def record_curves(space, configs: list, table: Path) -> float:
    df = read_table(table)
    done = set(df["config_hash"]) if not df.empty else set()
    train_cfg = space.fixed_train()
    context = TrialContext.create(load_data(space.data), train_cfg, space.eval, "cpu")
    start = time.perf_counter()
    rows = df.to_dict("records") if not df.empty else []
    for i, config in enumerate(configs):
        key = config_hash(config)
        if key in done:
            continue
        t0 = time.perf_counter()
        result = run_trial(config, context, train_cfg, space.measure)
        curve = dict(result.metrics.learning_curve or [])
        m = result.metrics  # timed under whatever load there was; the speed phase re-times them
        row = {"config_hash": key, "outcome": result.outcome, "params": m.params, "flops": m.flops,
               "train_throughput": m.train_throughput, "speed_phase": False,
               **{qualified(ARCHITECTURE, k): str(v) if isinstance(v, (list, dict)) else v
                  for k, v in flatten(config.model_dump(mode="json")).items()},
               **{c: curve.get(int(c.rsplit("_", 1)[1])) for c in curve_columns()}}
        rows.append(row)
        write_table(pd.DataFrame(rows), table)
        print(f"{i + 1}/{len(configs)} {key[:10]} {result.outcome} val_loss@{STEPS}={row[curve_columns()[-1]]} "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
    return time.perf_counter() - start


def record_speed(space, configs: list, table: Path) -> float:
    df = read_table(table)
    if df.empty:
        raise SystemExit(f"{table} has no curves yet: run the curves phase first")
    by_hash = {config_hash(c): c for c in configs}
    device = resolve_device("cpu")
    settings = resolve_run_settings(space.fixed_train(), device)
    cfg = MeasureConfig(warmup_steps=2, repeats=7, latency=False, max_seconds=20)
    shape = (1, 16, 16)
    start = time.perf_counter()
    speeds = {}
    for key in df["config_hash"]:
        torch.manual_seed(0)
        cost = measure(build_unet(by_hash[key]), shape, space.fixed_train().batch_size, settings, cfg)
        speeds[key] = {"params": cost.params, "flops": cost.flops, "train_throughput": cost.train_throughput,
                       "train_throughput_iqr": cost.train_throughput_iqr, "infer_throughput": cost.infer_throughput}
    for col in ("params", "flops", "train_throughput", "train_throughput_iqr", "infer_throughput"):
        df[col] = df["config_hash"].map(lambda k, c=col: speeds[k][c])
    df["speed_phase"] = True
    write_table(df, table)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("all", "curves", "speed"), default="all")
    parser.add_argument("--n", type=int, default=160, help="distinct architectures (the issue asks for at least 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "curves.parquet")
    args = parser.parse_args(argv)

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    space = load_space(SPACE, SETS)
    configs = sample_distinct(space, args.n, args.seed)
    meta_path = args.out.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.update(space=str(SPACE.relative_to(ROOT)), sets=SETS, n=args.n, seed=args.seed,
                machine={"platform": platform.platform(), "cpus": os.cpu_count(), "device": device_info(torch.device("cpu")),
                         "python": sys.version.split()[0], "torch": torch.__version__})
    for phase, run in (("curves", record_curves), ("speed", record_speed)):
        if args.phase in ("all", phase):
            load = os.getloadavg()
            seconds = run(space, configs, args.out)
            meta[phase] = {"command": "python benchmarks/record_curves.py --phase " + phase, "wall_s": round(seconds, 1),
                           "loadavg_before": [round(x, 2) for x in load],
                           "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                           "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            atomic_write_json(meta_path, meta)
            print(f"# {phase}: {seconds:.0f}s, load average {load[0]:.2f} before", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
