"""Record the ground truth that every cheap ranking signal is measured against (issue 27).

    python benchmarks/record_truth.py                      # the curves phase, resumable; then the speed phase
    python benchmarks/record_truth.py --phase curves       # may share the machine: losses and FDs are deterministic
    python benchmarks/record_truth.py --phase speed        # re-time throughput alone (a quiet machine)

What is recorded: distinct architectures of the quickstart's space (search_spaces/quickstart.yaml)
— the 12 its own study draws (TPE, seed 0) first, then architectures drawn at random over its
range (seeded) up to `--n` — each trained for `STEPS` steps (33x the quickstart's 60) under the
quickstart's data, seed and validation protocol, with:

- the fixed-noise validation loss every `EVERY` steps, and at steps 5, 10 and 15
  (`val_loss_at_<step>`), so that a learning curve can be extrapolated from its first 20 steps;
- the sample quality with the digits features at the quickstart defaults of `eval.quality`
  (1,000 samples, DDIM 50) at steps 60, 200, 600 and the last (`fd_at_<step>`, `kid_at_<step>`,
  `sample_precision_at_<step>`, `sample_recall_at_<step>`, `fd_noise_at_<step>`);
- params and FLOPs, and the training throughput, first as timed during the curves phase (under
  whatever load there was), then re-timed alone by the speed phase (benchmarks/record_curves.py's:
  the same protocol and table layout; `speed_phase` says which a row holds).

The first `--second-seed` architectures are trained again with `train.seed` 1 (rows with `seed`
1): the seed-to-seed agreement is the ceiling any proxy can reach.

Resumable: each finished (architecture, seed) is appended to the table at once (atomically), so a
killed recording loses at most the one in progress, and the same command continues where it
stopped; record it over several sessions. Output: `benchmarks/data/truth.parquet`,
`benchmarks/data/truth.json` (how it was recorded: command, machine, torch, wall time and load of
each phase, per session) and `benchmarks/data/truth_plan.json` (the architectures, fixed by the
first session so that every later one records the same list).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from archsearch.data import load_data
from archsearch.device import device_info
from archsearch.io import atomic_write_json
from archsearch.quality import QualityPhase
from archsearch.schema.loading import unet_config_from_dict
from archsearch.schema.paths import ARCHITECTURE, flatten, qualified
from archsearch.schema.space import load_space
from archsearch.search.objective import config_hash
from archsearch.search.sampling import instantiate, random_suggester
from archsearch.trial import TrialContext, run_trial

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_curves import read_table, record_speed, write_table  # noqa: E402 - the same tables, the same speed phase

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "quickstart.yaml"
STEPS, EVERY = 2000, 20
EARLY = (5, 10, 15)  # three more points before the first 20, so that a curve can be fitted to the first 20 steps
QUALITY_STEPS = (60, 200, 600, STEPS)
QUALITY_METRICS = ("fd", "kid", "sample_precision", "sample_recall", "fd_noise")
SETS = {"train.steps": STEPS, "eval.curve_points": 0, "eval.quality": {"features": "digits"}}


def loss_steps() -> list[int]:
    return [*EARLY, *range(EVERY, STEPS + 1, EVERY)]


def loss_columns() -> list[str]:
    return [f"val_loss_at_{s}" for s in loss_steps()]


def quickstart_configs(folder: Path | None) -> list:
    """The architectures the quickstart study draws, in trial order: from a study folder, or
    from a run of the quickstart itself in a temporary folder."""
    from archsearch import run_study

    if folder is None:
        tmp = Path(tempfile.mkdtemp(prefix="truth-quickstart-"))
        run_study(load_space(SPACE), tmp)
        folder = tmp / "quickstart"
    configs = []
    for path in sorted((folder / "trials").glob("*/config.yaml"), key=lambda p: int(p.parent.name)):
        configs.append(unet_config_from_dict(yaml.safe_load(path.read_text()), prefix=ARCHITECTURE))  # a trial's UNetConfig
    return configs


def architectures(space, n: int, seed: int, quickstart: Path | None) -> tuple[list, set[str]]:
    """`n` distinct planned configs, the quickstart's own first (its distinct ones: a duplicate
    there is a reused trial), then random ones over the space; and the quickstart's hashes."""
    out, seen = [], set()
    for config in quickstart_configs(quickstart):
        if config_hash(config) not in seen:
            seen.add(config_hash(config))
            out.append(config)
    own = set(seen)
    suggest = random_suggester(seed)
    for _ in range(100 * n):
        if len(out) >= n:
            return out, own
        config = unet_config_from_dict(instantiate(space.architecture, suggest, ARCHITECTURE), prefix=ARCHITECTURE)
        if config_hash(config) not in seen:
            seen.add(config_hash(config))
            out.append(config)
    raise SystemExit(f"the space holds fewer than {n} distinct architectures")


class RecordingPhase(QualityPhase):
    """The quality phase, keeping every measurement's values (the trial keeps only fd's curve)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[dict[str, float]] = []

    def measure(self, *args, **kwargs):
        result = super().measure(*args, **kwargs)
        self.seen.append(result.values)
        return result


def record_curves(space, runs: list[tuple[object, int]], table: Path, quickstart: set[str]) -> float:
    df = read_table(table)
    done = set(zip(df["config_hash"], df["seed"])) if not df.empty else set()
    data = load_data(space.data)
    context = TrialContext.create(data, space.fixed_train(), space.eval, "cpu")
    context.quality = RecordingPhase(space.eval.quality, data)
    rows = df.to_dict("records") if not df.empty else []
    start = time.perf_counter()
    for config, seed in runs:
        key = config_hash(config)
        if (key, seed) in done:
            continue
        t0 = time.perf_counter()
        train_cfg = space.fixed_train().model_copy(update={"seed": seed})
        context.quality.seen.clear()
        result = run_trial(config, context, train_cfg, space.measure, eval_steps=loss_steps()[:-1],
                           quality_steps=QUALITY_STEPS)
        # The quality curve names the steps of the measurements that succeeded, in order.
        fds = {int(step): values for (step, _), values in zip(result.metrics.quality_curve or [], context.quality.seen)}
        m = result.metrics
        curve = dict(m.learning_curve or [])
        row = {"config_hash": key, "seed": seed, "in_quickstart": key in quickstart,
               "outcome": result.outcome, "params": m.params, "flops": m.flops, "train_throughput": m.train_throughput,
               "speed_phase": False, "wall_s": round(time.perf_counter() - t0, 1),
               **{qualified(ARCHITECTURE, k): str(v) if isinstance(v, (list, dict)) else v
                  for k, v in flatten(config.model_dump(mode="json")).items()},
               **{c: curve.get(int(c.rsplit("_", 1)[1])) for c in loss_columns()},
               **{f"{metric}_at_{step}": fds.get(step, {}).get(metric) for step in QUALITY_STEPS
                  for metric in QUALITY_METRICS}}
        rows.append(row)
        write_table(pd.DataFrame(rows), table)
        print(f"{len(rows)}/{len(runs)} {key[:10]} seed {seed} {result.outcome} val_loss@{STEPS}="
              f"{row[loss_columns()[-1]]} fd@{STEPS}={row[f'fd_at_{STEPS}']} ({row['wall_s']}s)", flush=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("all", "curves", "speed"), default="all")
    parser.add_argument("--n", type=int, default=64, help="distinct architectures (the issue asks for at least 64)")
    parser.add_argument("--second-seed", type=int, default=16, help="of them, trained again with train.seed 1")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random architectures")
    parser.add_argument("--quickstart", type=Path, help="a quickstart study folder (default: run the quickstart)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "truth.parquet")
    args = parser.parse_args(argv)

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    space = load_space(SPACE, SETS)
    # The plan (which architectures, which of them the quickstart's) is fixed by the first session
    # and kept beside the table: a later session's quickstart could draw other trials.
    plan_path = args.out.with_name(args.out.stem + "_plan.json")
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        configs = [unet_config_from_dict(c, prefix=ARCHITECTURE) for c in plan["configs"]]
        own = set(plan["quickstart"])
    else:
        configs, own = architectures(space, args.n, args.seed, args.quickstart)
        atomic_write_json(plan_path, {"configs": [c.model_dump(mode="json") for c in configs], "quickstart": sorted(own)})
    # Seed 1 for every (n / second_seed)-th architecture, so the noise floor spans the range.
    stride = max(1, len(configs) // max(args.second_seed, 1))
    runs = [(c, 0) for c in configs] + [(c, 1) for c in configs[::stride][: args.second_seed]]
    meta_path = args.out.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.update(space=str(SPACE.relative_to(ROOT)), sets=SETS, n=args.n, second_seed=args.second_seed, seed=args.seed,
                machine={"platform": platform.platform(), "cpus": os.cpu_count(),
                         "device": device_info(torch.device("cpu")), "python": sys.version.split()[0],
                         "torch": torch.__version__})
    for phase in ("curves", "speed"):
        if args.phase not in ("all", phase):
            continue
        load = os.getloadavg()
        session = {"command": f"python benchmarks/record_truth.py --phase {phase}",
                   "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "loadavg_before": [round(x, 2) for x in load], "finished": None}
        meta.setdefault(phase, []).append(session)
        atomic_write_json(meta_path, meta)  # a session killed midway is on record too
        seconds = (record_curves(space, runs, args.out, own) if phase == "curves"
                   else record_speed(space, configs, args.out))
        session.update(wall_s=round(seconds, 1), loadavg_after=[round(x, 2) for x in os.getloadavg()],
                       finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        atomic_write_json(meta_path, meta)
        print(f"# {phase}: {seconds:.0f}s, load average {load[0]:.2f} before", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
