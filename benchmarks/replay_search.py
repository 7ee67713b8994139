"""Replay searches against recorded learning curves: what early stopping saves, and what it keeps.

    python benchmarks/replay_search.py                         # 10 seeds, W = 1 and 8
    python benchmarks/replay_search.py --seeds 20 --budget 24  # more seeds, 24 full trials of compute

No training happens here. benchmarks/record_curves.py recorded, for distinct architectures of the
digits space (search_spaces/digits.yaml, the quickstart's data and budget over more knobs), the
fixed-noise validation loss every 10 steps up to 300 and the measured training throughput. This script runs archsearch's real sampler (`make_sampler`: TPE,
multivariate, constant liar; or random) and its real stopping rule (archsearch.search.stopping)
on Optuna studies whose trials look their losses up in that table:

- A trial's architecture is sampled from the space with archsearch's own sampling code. Its
  curve is that of the recorded architecture with the same config when there is one, else of the
  nearest recorded one (fewest differing searched fields; ties to the first recorded): the table
  cannot hold all of the space's 3,072 architectures, so the replay is of a nearest-neighbour
  surrogate, and the line `exact lookups` says how often a sampled architecture was in the table.
- A trial's wall time is simulated from its steps and throughput (batch / images/s per step;
  evaluation time is not simulated). W workers run asynchronously: a trial reaching a rung is
  judged against every trial that reached that rung earlier in simulated time, as workers sharing
  one storage judge it (asynchronous successive halving never waits for a rung to fill).
- Every strategy gets the same compute: `--budget` full-length trials' worth of training steps.
  The hypervolume is over completed trials (a stopped trial is never on the front), normalized
  over the whole table with the report's reference point (archsearch.report.hypervolume).

Strategies, each on the same seeds:
- `full`: TPE, every trial trains its whole budget (today's default);
- `mo-asha`: TPE + MO-ASHA on (val_loss, train_throughput): min_steps 20, eta 3, 3 trials/rung;
- `loss-asha`: TPE + ASHA on the loss alone, same rungs (what a single-objective scheduler does);
- `random`: random search, no stopping;
- with `--asha MIN_STEPS:ETA ...`, MO-ASHA again at other rung settings (`mo-asha 10:4`...), a
  sensitivity check of the scheduler's two settings on the same seeds (the default rows stay).

Printed per W: the median (over seeds) hypervolume at 1/3, 2/3 and all of the budget; the
compute each needs to reach 95% (and 100%) of the `full` search's final hypervolume, as a
fraction of the budget; how often the true front's fastest member (from the whole table) was
found by a completed trial; and the exact-lookup rate.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from archsearch.pareto import pareto_mask
from archsearch.report.hypervolume import reference_scale
from archsearch.schema.loading import unet_config_from_dict
from archsearch.schema.paths import ARCHITECTURE, flatten, qualified
from archsearch.schema.space import load_space
from archsearch.search.objective import config_hash
from archsearch.search.sampling import instantiate, optuna_suggester
from archsearch.search.stopping import rung_steps, should_stop
from archsearch.search.study import make_sampler

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "data" / "curves.parquet"
SPACE = ROOT / "search_spaces" / "digits.yaml"
STEPS, MIN_STEPS, ETA, MIN_TRIALS = 300, 20, 3, 3
RECORDED_EVERY = 10  # the table's losses are at every 10th step: rungs must fall on them
DIRECTIONS = ["minimize", "maximize"]


@dataclass(frozen=True)
class Strategy:
    name: str
    stopping: str | None = None  # "mo" (every objective) or "loss" (val_loss alone)
    min_steps: int = MIN_STEPS
    eta: int = ETA
    random: bool = False

    @property
    def rungs(self) -> list[int]:
        return rung_steps(self.min_steps, self.eta, STEPS) if self.stopping else []


STRATEGIES = (Strategy("full"), Strategy("mo-asha", "mo"), Strategy("loss-asha", "loss"), Strategy("random", random=True))


def asha_variant(text: str) -> Strategy:
    """`MIN_STEPS:ETA` -> an MO-ASHA strategy with those rungs (argparse type)."""
    try:
        min_steps, eta = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MIN_STEPS:ETA, e.g. 10:4") from None
    if eta < 2 or not 0 < min_steps < STEPS or min_steps % RECORDED_EVERY:
        raise argparse.ArgumentTypeError(f"{text!r}: eta must be >= 2 and min_steps a multiple of "
                                         f"{RECORDED_EVERY} below {STEPS} (the table's recorded steps)")
    return Strategy(f"mo-asha {min_steps}:{eta}", "mo", min_steps, eta)  # rungs min_steps·eta^k: recorded steps too


def searched_fields(df: pd.DataFrame) -> list[str]:
    """The architecture columns that vary across the recorded table: the fields a lookup compares."""
    return [c for c in df.columns if c.startswith(ARCHITECTURE + ".") and df[c].astype(str).nunique() > 1]


class Table:
    """The recorded architectures: their curves, speed and searched fields, with the lookup."""

    def __init__(self, df: pd.DataFrame, searched: list[str]):
        df = df[df[f"val_loss_at_{STEPS}"].notna()].reset_index(drop=True)
        self.df, self.searched = df, searched
        self.by_hash = {h: i for i, h in enumerate(df["config_hash"])}
        self.fields = df[searched].astype(str).to_numpy()
        self.final = df[f"val_loss_at_{STEPS}"].to_numpy(float)
        self.speed = df["train_throughput"].to_numpy(float)
        values = np.column_stack([self.final, self.speed])
        self.scale = reference_scale([values], DIRECTIONS)
        front = np.flatnonzero(pareto_mask(values, DIRECTIONS))
        self.fastest = int(front[np.argmax(self.speed[front])])  # the true front's fastest member

    def lookup(self, config) -> tuple[int, bool]:
        """(row, exact) for a sampled config: its own row, else the nearest by differing fields."""
        row = self.by_hash.get(config_hash(config))
        if row is not None:
            return row, True
        flat = flatten(config.model_dump(mode="json"))
        mine = np.array([str(flat.get(c.removeprefix(ARCHITECTURE + "."))) for c in self.searched])
        return int(np.argmin((self.fields != mine).sum(axis=1))), False

    def loss(self, row: int, step: int) -> float:
        return float(self.df.at[row, f"val_loss_at_{step}"])

    def rank_agreement(self, step: int) -> float:
        """Spearman correlation of the loss at `step` with the final loss, over every recorded row."""
        return float(self.df[f"val_loss_at_{step}"].corr(self.df[f"val_loss_at_{STEPS}"], method="spearman"))

    def hypervolume(self, rows: list[int]) -> float:
        if not rows:
            return 0.0
        return self.scale.hypervolume(np.column_stack([self.final[rows], self.speed[rows]]))


@dataclass
class Run:
    """One replayed search: (steps spent, hypervolume) after every completion, and what it found."""

    history: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])
    completed: list[int] = field(default_factory=list)
    trials: int = 0          # asked, reused rows included
    trained: int = 0         # distinct rows trained (completed or stopped)
    stopped: int = 0
    exact: int = 0
    exhausted: bool = False  # the sampler found no untrained row in `max_asks` asks

    def hv_at(self, steps: float) -> float:
        return max(hv for s, hv in self.history if s <= steps)

    def steps_to(self, target: float) -> float:
        """Steps spent when the hypervolume first reached `target` (inf: never)."""
        return next((s for s, hv in self.history if hv >= target - 1e-12), float("inf"))


def replay(table: Table, space, strategy: Strategy, seed: int, workers: int, budget_steps: int, batch: int) -> Run:
    sampler = optuna.samplers.RandomSampler(seed=seed) if strategy.random else make_sampler(space, seed_offset=seed)
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    rungs = strategy.rungs
    at_rung: dict[int, list[tuple[float, ...]]] = {s: [] for s in rungs}
    run, spent, order = Run(), 0.0, itertools.count()
    max_asks = 200  # asks in a row that only find trained rows: the table is exhausted
    events: list = []  # (simulated time, order, trial, row, steps done, next checkpoint index)

    known: dict[int, object] = {}  # row -> its outcome: final values, or "stopped"

    def start(now: float) -> None:
        # A row trained before is told again at no cost, as archsearch's duplicate lookup reuses an
        # identical config's result: otherwise the surrogate's many-to-one lookup would retrain it.
        for _ in range(max_asks):
            trial = study.ask()
            config = unet_config_from_dict(instantiate(space.architecture, optuna_suggester(trial)), prefix=ARCHITECTURE)
            row, exact = table.lookup(config)
            run.trials, run.exact = run.trials + 1, run.exact + exact
            if row not in known:
                known[row] = None  # running
                schedule(now, trial, row, 0, 0)
                return
            if isinstance(known[row], tuple):
                study.tell(trial, list(known[row]))
            else:  # running or stopped elsewhere: its result is not a point of the front yet
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        run.exhausted = True

    def finish() -> Run:
        run.trained = sum(v is not None for v in known.values())
        return run

    def schedule(now: float, trial, row: int, done: int, k: int) -> None:
        target = rungs[k] if k < len(rungs) else STEPS
        seconds = (target - done) * batch / table.speed[row]
        heapq.heappush(events, (now + seconds, next(order), trial, row, target, k))

    for _ in range(workers):
        start(0.0)
    last = {}  # trial number -> steps already counted
    while events:
        now, _, trial, row, step, k = heapq.heappop(events)
        spent += step - last.get(trial.number, 0)
        last[trial.number] = step
        if step < STEPS:  # a rung
            every = strategy.stopping == "mo"
            vector = (table.loss(row, step), table.speed[row]) if every else (table.loss(row, step),)
            directions = DIRECTIONS if every else DIRECTIONS[:1]
            decision = should_stop(vector, at_rung[step], directions, strategy.eta, MIN_TRIALS)
            at_rung[step].append(vector)
            if not decision.stop:
                schedule(now, trial, row, step, k + 1)
                continue
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            known[row] = "stopped"
            run.stopped += 1
        else:
            known[row] = (table.final[row], table.speed[row])
            study.tell(trial, list(known[row]))
            run.completed.append(row)
            run.history.append((spent, table.hypervolume(run.completed)))
        if spent < budget_steps and not run.exhausted:
            start(now)
    return finish()


def summarize(table: Table, strategies, runs: dict, seeds: range, workers: int, budget_steps: int) -> list[str]:
    lines = [f"W = {workers} simulated workers, budget {budget_steps} training steps "
             f"({budget_steps // STEPS} full trials), median over {len(seeds)} seeds:",
             f"{'strategy':<13} {'trained':>7} {'stopped':>7} {'HV@1/3':>7} {'HV@2/3':>7} {'HV@1':>7} "
             f"{'to 95% of full':>15} {'to 100% of full':>16} {'fastest found':>14} {'exact lookups':>14}"]
    short = [s.name for s in strategies if any(runs[s.name, seed].exhausted for seed in seeds)]
    if short:
        lines.insert(1, f"  ({', '.join(short)}: some runs ran out of untrained rows before the budget; "
                        "record more architectures)")
    for strategy in strategies:
        rs = [runs[strategy.name, seed] for seed in seeds]
        targets = [runs["full", seed].hv_at(budget_steps) for seed in seeds]
        hv = [statistics.median(r.hv_at(f * budget_steps) for r in rs) for f in (1 / 3, 2 / 3, 1)]
        reach = [statistics.median(r.steps_to(q * t) / budget_steps for r, t in zip(rs, targets)) for q in (0.95, 1.0)]
        found = sum(table.fastest in r.completed for r in rs)
        exact = sum(r.exact for r in rs) / max(1, sum(r.trials for r in rs))
        lines.append(f"{strategy.name:<13} {statistics.median(r.trained for r in rs):>7.0f} "
                     f"{statistics.median(r.stopped for r in rs):>7.0f} {hv[0]:>7.4f} {hv[1]:>7.4f} {hv[2]:>7.4f} "
                     f"{_fraction(reach[0]):>15} {_fraction(reach[1]):>16} {found:>8}/{len(rs):<5} {exact:>14.0%}")
    return lines


def _fraction(x: float) -> str:
    return "never" if x == float("inf") else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=16, help="compute, in full-length trials (300 steps each); small "
                        "against the table, so that no search runs out of recorded architectures")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--asha", type=asha_variant, nargs="+", default=[], metavar="MIN_STEPS:ETA",
                        help="also replay MO-ASHA with these rung settings (a sensitivity check)")
    args = parser.parse_args(argv)
    strategies = STRATEGIES + tuple(args.asha)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(SPACE, {"train.steps": str(STEPS)})
    df = pd.read_parquet(args.table)
    searched = searched_fields(df)
    table = Table(df, searched)
    speed = "re-timed alone (speed phase)" if df.get("speed_phase", pd.Series([False])).all() else "timed during the curves phase"
    print(f"# {len(table.df)} recorded architectures, {len(searched)} searched fields, throughput {speed}")
    print(f"# true front: {int(pareto_mask(np.column_stack([table.final, table.speed]), DIRECTIONS).sum())} members; "
          f"fastest {table.speed[table.fastest]:.0f} img/s at val_loss {table.final[table.fastest]:.4f}")
    print(f"# rungs at steps {rung_steps(MIN_STEPS, ETA, STEPS)} (min_steps {MIN_STEPS}, eta {ETA}, "
          f"min_trials_at_rung {MIN_TRIALS}); {qualified('train', 'steps')} = {STEPS}")
    steps = sorted({step for s in strategies for step in s.rungs})
    print(f"# how rung losses rank the architectures as their step-{STEPS} losses do (Spearman over the table): "
          + ", ".join(f"step {step} {table.rank_agreement(step):.2f}" for step in steps))
    batch = space.fixed_train().batch_size
    budget_steps = args.budget * STEPS
    seeds = range(args.seeds)
    for workers in args.workers:
        runs = {(s.name, seed): replay(table, space, s, seed, workers, budget_steps, batch)
                for s in strategies for seed in seeds}
        print()
        print("\n".join(summarize(table, strategies, runs, seeds, workers, budget_steps)), flush=True)  # one W at a time
    return 0


if __name__ == "__main__":
    sys.exit(main())
