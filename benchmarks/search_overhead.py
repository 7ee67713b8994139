"""What archsearch's own search layer costs per trial as a study grows: sampling, recording,
the results tables, the duplicate lookup.

    python benchmarks/search_overhead.py                          # 10, 100, 1000, 5000 trials; journal (+ PostgreSQL)
    python benchmarks/search_overhead.py --sizes 10 100 --timed 3 # a quick look
    python benchmarks/search_overhead.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

No model trains. The study is the quickstart's space (search_spaces/quickstart.yaml) with
`train.lr` also searched, log-uniform in [1e-4, 1e-2], so that no two trials are duplicates and
the duplicate lookup always scans the whole history (its worst case). Each trial goes through
the real path of `archsearch run` (archsearch.run_study: the sampler's ask, sampling and
validating the config, the duplicate lookup, metrics.json, the tell with every user attribute,
trials/<n>/ and the tables trials.csv + trials.parquet, checkpoint pruning), except that
`archsearch.trial.run_trial` is replaced by a synthetic objective computed from the config in
microseconds (its own time is subtracted), which returns a record of the size a real trial's is.

The history is grown between sizes by adding completed trials directly (`study.add_trials`,
records made by the same sampling and recording code on an in-memory study), then `--timed`
trials are run through the real loop at that size for each sampler: TPE (archsearch's default:
multivariate, constant liar), NSGA-II and random. One history serves the three samplers: between
them the script removes the study folder's space.yaml, the one check that refuses a resumed
study a changed sampler.

Printed per storage, sampler and size, in milliseconds per trial (means over the timed trials):
ask (the sampler: `study.ask` and the `suggest_*` calls of sampling a config), record (metrics.json + tell + user attributes), tables (trials/<n>/ files, the two
tables, pruning), dup (reading the completed trials + the scan), total (one whole loop iteration:
all of the above and the rest of the engine, minus the synthetic objective); then what one
rewrite of the tables costs at that size, every row read anew (full) and with the finished
trials' rows cached as the study folder keeps them (cached, checkpoint pruning included). The
folder rewrites them after every trial until a rewrite takes 0.1 s, then as often as keeps
rewriting within 5% of the study's time (archsearch.folder.TABLE_SHARE), so at thousands of fast
trials `tables` holds only the trial's own files and the amortized rewrites.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = ROOT / "search_spaces" / "quickstart.yaml"
SAMPLERS = {"tpe": {"kind": "tpe"}, "nsga2": {"kind": "nsga2"}, "random": {"kind": "random"}}
PHASES = ("ask", "record", "tables", "dup", "total")  # means per trial
REWRITES = ("full", "cached")  # one rewrite of the tables: every row read anew; finished rows cached


# --------------------------------------------------------------------------- the synthetic objective

def synthetic_result(config, train_cfg):
    """A completed trial's result computed from the config: bigger nets score lower loss and run
    slower, with a smooth dependence on the learning rate; as many curve points as a real one."""
    from archsearch.metrics import TrialMetrics
    from archsearch.trial import TrialResult

    levels = config.resolved_levels()
    size = sum(lv.width ** 2 * (lv.blocks + 1) for lv in levels) * (2 if getattr(config.middle, "attention", True) else 1)  # a transformer middle attends
    lr_term = (math.log10(train_cfg.lr) + 2.7) ** 2
    loss = 0.05 + 2.0 / math.log(size + 10) + 0.02 * lr_term
    speed = 4e6 / (size + 500)
    metrics = TrialMetrics(
        params=size * 9, flops=size * 2000, train_throughput=speed, train_throughput_iqr=speed * 0.02,
        train_speed_vs_ref=speed / 800, ref_throughput=800.0, train_throughput_normalized=speed,
        val_loss=loss, val_loss_buckets=[loss * f for f in (0.3, 0.7, 1.0, 1.3, 1.7)], train_loss=loss * 1.1,
        learning_curve=[[20, loss * 1.5], [40, loss * 1.2]], train_loss_curve=[[s, loss * 1.1] for s in range(10, 61, 10)],
        outcome="completed", steps_trained=train_cfg.steps, train_seconds=1.0, duration_s=2.0, device="cpu",
        torch="bench", measure={"train_step_ms": 1.0, "train_steps": 3, "batch_size": 32, "warmup_steps": 1,
                                "ref_step_ms": 1.0},
    )
    return TrialResult("completed", "", metrics)


class Timers:
    """Wall time per phase, per trial: the wrappers add into `current`, which `close` files away."""

    def __init__(self):
        self.current: dict[str, float] = defaultdict(float)
        self.done: list[dict[str, float]] = []

    def wrap(self, owner, name: str, phase: str):
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - start

        setattr(owner, name, timed)
        return real


def instrument(timers: Timers) -> None:
    """Replace run_trial by the synthetic objective and time the search layer's phases."""
    import optuna

    import archsearch.folder as folder
    import archsearch.search.engine as engine
    import archsearch.search.objective as objective
    import archsearch.trial as trial_module
    from archsearch.search.events import Observer

    def fake_run_trial(config, context, train_cfg, measure_cfg, **kwargs):
        start = time.perf_counter()
        result = synthetic_result(config, train_cfg)
        timers.current["objective"] += time.perf_counter() - start
        return result

    trial_module.run_trial = fake_run_trial
    timers.wrap(optuna.study.Study, "ask", "ask")  # a multivariate sampler's relative sampling
    timers.wrap(objective, "sample_trial_configs", "ask")  # the suggest_* calls: independent sampling
    timers.wrap(engine, "record_outcome", "record")
    timers.wrap(engine, "write_result", "record")
    timers.wrap(folder.StudyFolder, "trial_finished", "tables")
    timers.wrap(objective, "_find_duplicate", "dup")
    real_search_trial = engine.run_search_trial

    def search_trial(trial, space, context_for, progress, previous, *args, **kwargs):
        def timed_previous():
            start = time.perf_counter()
            try:
                return previous()
            finally:
                timers.current["dup"] += time.perf_counter() - start
        return real_search_trial(trial, space, context_for, progress, timed_previous, *args, **kwargs)

    engine.run_search_trial = search_trial

    class Loop(Observer):
        """One loop iteration is the time between two trials' starts."""

        def __init__(self):
            self.last = None

        def trial_started(self, number, label) -> None:
            now = time.perf_counter()
            if self.last is not None:
                timers.current["total"] = now - self.last - timers.current.pop("objective", 0.0)
                timers.done.append(dict(timers.current))
            timers.current.clear()
            self.last = now

    timers.loop = Loop()


# --------------------------------------------------------------------------- growing the history

def history(space, n: int, seed: int = 0) -> list:
    """`n` completed trials as the real code records them (FrozenTrials for study.add_trials)."""
    import optuna

    from archsearch.search.objective import run_search_trial

    records = []
    memory = optuna.create_study(directions=[o.direction for o in space.objectives],
                                 sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = memory.ask()
        outcome = run_search_trial(trial, space, lambda train_cfg: None)
        assert outcome.state == "complete", outcome.reason
        records.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=outcome.values, params=trial.params,
            distributions=trial.distributions, user_attrs={**outcome.attrs, "phase": "done"}))
        memory.tell(trial, outcome.values)
    return records


def rewrite_costs(trials: list, out: Path) -> dict[str, float]:
    """Milliseconds of one rewrite of the tables (table + trials.csv + trials.parquet) at this
    size: reading every trial's row anew, and as the study folder does, with finished rows cached."""
    from archsearch.folder import StudyFolder
    from archsearch.results import trials_dataframe, write_tables

    objectives = ["val_loss", "train_throughput_normalized"]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_tables(trials_dataframe(trials, objectives), out)
    full = time.perf_counter() - start
    folder = StudyFolder(out, objectives, checkpoints="front")
    folder._tables(trials, force=True)  # fills the row cache
    start = time.perf_counter()
    folder._tables(trials, force=True)
    return {"full": 1000 * full, "cached": 1000 * (time.perf_counter() - start)}


def space_for(sampler: str, name: str):
    import yaml

    from archsearch.schema.space import space_from_dict

    data = yaml.safe_load(SPACE.read_text())
    data["study"].update({"name": name, "sampler": SAMPLERS[sampler], "trials": 1})
    data["train"]["lr"] = {"float": {"low": 1e-4, "high": 1e-2, "log": True}}
    return space_from_dict(data)


def measure_storage(label: str, storage: str | None, sizes: list[int], timed: int, results: Path, records: list,
                    timers: Timers) -> list[dict]:
    import optuna

    from archsearch import run_study
    from archsearch.results import open_study

    name = f"overhead-{os.getpid()}"
    study_dir = results / name
    rows = []
    run_study(space_for("random", name), results, storage=storage, trials=1, view=timers.loop)  # creates the study
    added = 0
    for size in sizes:
        study = open_study(study_dir, storage, name)
        have = len(study.get_trials(deepcopy=False))
        grow = max(0, size - have)
        start = time.perf_counter()
        study.add_trials(records[added:added + grow])
        added += grow
        fill_s = time.perf_counter() - start
        for sampler in SAMPLERS:
            (study_dir / "space.yaml").unlink(missing_ok=True)  # the sampler changes; the history does not
            timers.done.clear()
            timers.loop.last = None
            count = len(open_study(study_dir, storage, name).get_trials(deepcopy=False))
            run_study(space_for(sampler, name), results, storage=storage, trials=count + timed + 1, view=timers.loop)
            per = {phase: 1000 * statistics.mean(t.get(phase, 0.0) for t in timers.done) for phase in PHASES}
            per.update(rewrite_costs(open_study(study_dir, storage, name).get_trials(deepcopy=False), results / "tables"))
            rows.append({"storage": label, "sampler": sampler, "trials": size, **per, "fill_s": fill_s})
            print(f"{label:<10} {sampler:<7} {size:>6,}  " + "  ".join(f"{per[p]:8.1f}" for p in PHASES + REWRITES),
                  flush=True)
    if storage is not None:
        optuna.delete_study(study_name=name, storage=storage)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 5000], help="study sizes to time at")
    parser.add_argument("--timed", type=int, default=5, help="trials timed per sampler and size")
    parser.add_argument("--postgres", default=os.environ.get("ARCHSEARCH_TEST_POSTGRES_URL"),
                        help="a PostgreSQL URL to time as well (default: $ARCHSEARCH_TEST_POSTGRES_URL; none: skip)")
    parser.add_argument("--no-journal", action="store_true", help="time PostgreSQL only")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    from archsearch.search.study import quiet_optuna

    quiet_optuna()
    timers = Timers()
    instrument(timers)
    sizes = sorted(args.sizes)
    start = time.perf_counter()
    records = history(space_for("random", "history"), sizes[-1])
    print(f"# quickstart space + train.lr searched; {len(records):,} trial records made in "
          f"{time.perf_counter() - start:.1f} s; {args.timed} timed trials per sampler and size; ms per trial "
          f"(means); full, cached: ms of one rewrite of the tables, rows read anew / finished rows cached", flush=True)
    print(f"{'storage':<10} {'sampler':<7} {'trials':>6}  " + "  ".join(f"{p:>8}" for p in PHASES + REWRITES),
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        storages = ([] if args.no_journal else [("journal", None)]) + ([("postgresql", args.postgres)] if args.postgres else [])
        for label, storage in storages:
            rows += measure_storage(label, storage, sizes, args.timed, Path(tmp) / label, records, timers)
            shutil.rmtree(Path(tmp) / label, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
