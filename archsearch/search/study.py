"""`archsearch run`'s search: create or load the study, check it, and run its trials with the engine.

    run = run_search(space, "results", observers=[display, folder], worker_observers=[folder])

The Python API, `archsearch.run_study`, composes this with the study folder's observer
(archsearch.folder): search writes no tables itself; it emits events (archsearch.search.events).
The folder `<results_dir>/<study name>/` gets the embedded storage (`optuna.journal`, unless a
storage URL is given) and the resolved space (`space.yaml`) here.

The trial count is the study's total: running the same command again resumes, keeps every
finished trial and runs only what is missing. Trials are asked and told one at a time
(ask/tell, archsearch.search.engine), so the loop decides when the count is reached and what a
failure records.

With `workers > 1` the parent only watches (`run_workers`, which `archsearch verify` uses too, with
its own work function), and emits `study_changed` when the study does. Each worker process runs
the engine with `worker_observers` (sent to it, so they must pickle). A
worker that raises sends one line (`worker 1: error: OperationalError: ...`, passwords redacted)
and exits 1; a worker killed by a signal is named by its exit status. Either is `WorkersFailed`
when a worker raised or when the study is short of its count; a worker killed while the others
still reached the count is a success, and the run's `problems` say so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ConfigErrors
from ..io import atomic_write_text
from ..schema.paths import FORMAT_ATTR, FORMAT_VERSION, format_version
from ..schema.space import SearchSpace
from ..schema.yaml_file import read_yaml
from ..schema.study import Objective
from .engine import SearchSource, observing, run_trials
from .events import Broadcast, Observer
from .storage import describe_error, describe_storage, format_storage_warnings, is_transient, open_storage
from .worker import Interrupted, handle_signals

__all__ = ["run_search", "SearchRun", "WorkersFailed", "create_study", "make_sampler", "make_pruner", "quiet_optuna",
           "run_workers", "worker_setup"]


@dataclass
class SearchRun:
    name: str
    study: Any  # the optuna Study, as the run left it
    study_dir: Path
    storage: str  # described, password redacted
    objectives: list[str]
    problems: list[str] = field(default_factory=list)  # workers that died while the study still reached its count


class WorkersFailed(RuntimeError):
    """Worker processes raised, or died and left the study short of its count; `lines` says which."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("; ".join(lines))


def make_sampler(space: SearchSpace, seed_offset: int = 0, version: int = FORMAT_VERSION):
    """The space's sampler, seeded with `study.seed + seed_offset` (see `create_study`), for a
    study of format `version` (a grid is listed under its parameter names)."""
    import optuna

    cfg, seed = space.study.sampler, (space.study.seed + seed_offset) % 2**32  # numpy's seed range
    if cfg.kind == "tpe":
        multivariate = True if cfg.multivariate is None else cfg.multivariate
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=cfg.n_startup_trials, multivariate=multivariate,
            group=cfg.group and multivariate, constant_liar=cfg.constant_liar,
        )
    if cfg.kind == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=cfg.population_size, crossover_prob=cfg.crossover_prob, mutation_prob=cfg.mutation_prob
        )
    if cfg.kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if cfg.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, qmc_type=cfg.qmc_type, scramble=cfg.scramble)
    from .grid import grid_search_space

    return optuna.samplers.GridSampler(grid_search_space(space, version), seed=seed)


def make_pruner(space: SearchSpace):
    import optuna

    cfg = space.study.pruner
    if cfg.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps)
    if cfg.kind == "percentile":
        return optuna.pruners.PercentilePruner(cfg.percentile, n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps)
    if cfg.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(reduction_factor=cfg.reduction_factor)
    return optuna.pruners.NopPruner()


def create_study(space: SearchSpace, storage, worker_index: int = 0):
    """Create the study, or load it when it exists (objectives must agree).

    A fresh study's sampler is seeded with `study.seed`. A resumed study, or the i-th worker,
    offsets the seed by the trials already there and by its index: the same seed would replay
    the first proposals, which the study has already tried.

    A study without trials records the current format version (archsearch.schema.paths); one
    written before versions were recorded is version 1 and keeps its parameter names (see
    archsearch.search.sampling.optuna_suggester), so that the sampler still matches its history.
    """
    import optuna

    directions = [o.direction for o in space.objectives]
    study = optuna.create_study(
        study_name=space.study.name, storage=storage, directions=directions, load_if_exists=True,
        sampler=make_sampler(space), pruner=make_pruner(space),
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ConfigErrors([ConfigError("objectives", f"the existing study {space.study.name!r} has directions {stored}, "
                                                      f"this space {directions}; use another study name")])
    objectives = [o.model_dump() for o in space.objectives]
    if study.user_attrs.get("objectives") not in (None, objectives):
        raise ConfigErrors([ConfigError("objectives", f"the existing study {space.study.name!r} optimizes "
                                                      f"{[o['metric'] for o in study.user_attrs['objectives']]}; use another study name")])
    trials = len(study.get_trials(deepcopy=False))
    if not trials and FORMAT_ATTR not in study.user_attrs:
        study.set_user_attr(FORMAT_ATTR, FORMAT_VERSION)
    version = format_version(study.user_attrs)
    offset = trials + 7919 * worker_index
    if offset or version != FORMAT_VERSION:
        study.sampler = make_sampler(space, seed_offset=offset, version=version)
    if "objectives" not in study.user_attrs:
        study.set_user_attr("objectives", objectives)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.set_metric_names([o.metric for o in space.objectives])
    return study


def run_search(
    space: SearchSpace,
    results_dir: str | Path = "results",
    storage: str | None = None,
    trials: int | None = None,
    device: str | None = None,
    observers: Sequence[Observer] = (),
    workers: int = 1,
    gpus: list[int] | None = None,
    worker_observers: Sequence[Observer] = (),
) -> SearchRun:
    """Run (or resume) the study a space describes until it holds `trials` finished trials,
    telling `observers` what happens (archsearch.search.events).

    With `workers > 1`, that many processes share the study (no more than the trials it still
    needs), each with `worker_observers`; on CUDA worker i gets GPU `gpus[i]` (default: GPU i),
    on the CPU the cores are split.
    Bad input (see archsearch.search.preflight) raises ConfigErrors before anything is
    written; raises `Interrupted` on SIGINT/SIGTERM after recording the running trials.
    """
    from .preflight import preflight
    from .sampling import check_candidates

    quiet_optuna()
    hear = Broadcast(observers)
    if trials is not None and trials < 1:
        raise ConfigErrors([ConfigError("--trials", f"{trials} trials; a study needs at least 1 (it is the study's total)")])
    target = trials or space.study.trials
    device_path = "--device" if device else "study.device"
    device = device or space.study.device
    check_candidates(space)
    study_dir, context_for = preflight(results_dir, space.study.name, storage, space.data, space.eval, space.train,
                                       device, device_path, on_load=hear.data_loaded, spec=space)
    handle = open_storage(storage, study_dir)
    space = _keep_study_objectives(space, study_dir, handle)
    _check_space(space, study_dir)
    study = create_study(space, handle)
    _write_space(space, study_dir)
    objectives = [o.metric for o in space.objectives]
    deadline = time.monotonic() + space.study.timeout if space.study.timeout else None
    source = SearchSource(space, target)
    problems: list[str] = []
    workers = min(workers, max(1, target - source.done(study)))  # resuming: more would start torch only to wait
    with observing(study, source, hear):
        if workers <= 1:
            with handle_signals():
                run_trials(study, source, context_for, hear, study_cfg=space.study, study_dir=study_dir, deadline=deadline)
        else:
            del context_for  # each worker reads the data itself
            args = (space.model_dump(mode="json"), str(study_dir.parent), storage, target, list(worker_observers))
            problems = run_workers(study, source, hear, target, workers, device, gpus, deadline, _work, args)
    return SearchRun(space.study.name, study, study_dir, describe_storage(storage, study_dir), objectives, problems)


def run_workers(study, source, hear: Observer, target: int, workers: int, device: str, gpus: list[int] | None,
                deadline: float | None, work, args: tuple) -> list[str]:
    """Start `workers` processes on this machine, each running `work(index, device, threads,
    seconds_left, *args)` (a module-level function, and picklable `args`: the processes are
    spawned), and watch the study until they are done; `target` is the count of finished trials
    (`source.done`) the run needs.

    Returns what went wrong with workers that did not stop the study (see the module docstring);
    raises `WorkersFailed` for what did.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no forked torch/optuna state in the children
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs, errors = [], []
    for i in range(workers):
        worker_device = _worker_device(device, i, gpus)
        receive, send = ctx.Pipe(duplex=False)  # the worker's one-line error, if it raises
        seconds_left = None if deadline is None else deadline - time.monotonic()
        proc = ctx.Process(target=_worker_process, args=(work, args, i, worker_device, threads, seconds_left, send),
                           name=f"archsearch-worker-{i}")
        proc.start()
        send.close()  # the child holds the only write end: a dead child reads as end of file
        procs.append(proc)
        errors.append(receive)
    interrupted: Interrupted | None = None
    seen = None
    try:
        with handle_signals():
            while any(p.is_alive() for p in procs):
                try:
                    time.sleep(1.0)
                    trials = study.get_trials(deepcopy=False)
                    running = [(t.number, t.user_attrs.get("phase", "starting")) for t in trials if t.state.name == "RUNNING"]
                    if (len(trials), running) == seen:
                        continue  # nothing new: do not reread the whole study into a table
                    seen = (len(trials), running)
                    hear.study_changed(trials, source.done(study), running)
                except Interrupted as exc:  # forward to the workers, then wait for them to record it
                    interrupted = exc
                    for p in procs:
                        if p.is_alive() and p.pid:
                            os.kill(p.pid, exc.signum)
                except Exception as exc:
                    if not is_transient(exc):  # the storage is down for the parent too: the workers will say
                        raise
    except BaseException:  # never leave workers behind: SIGTERM records their trials as interrupted
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=60)
        raise
    if interrupted is not None:
        raise interrupted
    for p in procs:
        p.join()
    failures = [f for i, (p, receive) in enumerate(zip(procs, errors)) if (f := _worker_failure(i, p, receive))]
    lines = [line for line, _ in failures]
    if any(raised for _, raised in failures) or (failures and source.done(study) < target):
        raise WorkersFailed(lines)
    return lines


def _worker_failure(index: int, proc, receive) -> tuple[str, bool] | None:
    """What ended worker `index` badly, in one line, and whether it raised; None when it ended well."""
    try:
        if receive.poll():
            return receive.recv(), True
    except (EOFError, OSError):  # it died without a word
        pass
    code = proc.exitcode
    if code is None or code == 0:
        return None
    if code < 0:
        return f"worker {index} (pid {proc.pid}) was killed by {signal.Signals(-code).name}", False
    return f"worker {index} (pid {proc.pid}) exited with status {code}", False


def _worker_device(device: str, index: int, gpus: list[int] | None) -> str:
    if gpus:
        return f"cuda:{gpus[index % len(gpus)]}"
    if device in ("cuda", "auto"):
        try:
            import torch

            if torch.cuda.is_available() and torch.cuda.device_count() > 1:
                return f"cuda:{index % torch.cuda.device_count()}"
        except ImportError:
            pass
    return device


def _worker_process(work, args, index, device, threads, seconds_left, errors) -> None:
    """Entry point of a worker process started by `run_workers`: an exception becomes one line
    sent to the parent on `errors`, and exit status 1 (no traceback)."""
    import sys

    format_storage_warnings(prefix=f"worker {index}: ")
    try:
        with handle_signals():
            work(index, device, threads, seconds_left, *args)
    except Interrupted as exc:
        sys.exit(exc.code)
    except Exception as exc:  # noqa: BLE001 - the parent reports it and exits 1
        with contextlib.suppress(OSError):
            errors.send(f"worker {index}: error: {describe_error(exc)}")
        sys.exit(1)


def _work(index, device, threads, seconds_left, space_data, results_dir, storage, target, observers) -> None:
    """A search worker: the engine's loop on the study, with the sampler's trials."""
    from ..schema.space import space_from_dict

    worker_setup(threads)
    space = space_from_dict(space_data)
    study_dir = Path(results_dir) / space.study.name
    study = create_study(space, open_storage(storage, study_dir), worker_index=index)
    from ..trial import LazyContext  # torch: only where trials run

    context_for = LazyContext(space.data, space.eval, device)
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    run_trials(study, SearchSource(space, target), context_for, Broadcast(observers), study_cfg=space.study,
               study_dir=study_dir, deadline=deadline)


def worker_setup(threads: int) -> None:
    """What every worker process does first: its share of the CPU threads, and a quiet Optuna."""
    import torch

    torch.set_num_threads(threads)
    quiet_optuna()


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _keep_study_objectives(space: SearchSpace, study_dir: Path, storage) -> SearchSpace:
    """A space file that names no objectives resumes a study under the study's own: the default
    objectives have changed (train_throughput_normalized since the speed reference), a study's
    have not. Read from its space.yaml, or from the storage for a study without a folder."""
    import optuna

    if "objectives" in space.model_fields_set:
        return space
    path = study_dir / "space.yaml"
    stored = (read_yaml(path) or {}).get("objectives") if path.exists() else None  # file, line, column if damaged
    if stored is None:
        summary = next((s for s in optuna.get_all_study_summaries(storage) if s.study_name == space.study.name), None)
        stored = summary.user_attrs.get("objectives") if summary is not None else None
    if not stored or [o.get("metric") for o in stored] == [o.metric for o in space.objectives]:
        return space
    return space.model_copy(update={"objectives": [Objective.model_validate(o) for o in stored]})


def _check_space(space: SearchSpace, study_dir: Path) -> None:
    """A resumed study must use the space it was started with (its space.yaml), read as today's
    schema reads it: a field added since (say `measure.reference`) takes its default there too,
    so a study started by an older archsearch resumes."""
    path = study_dir / "space.yaml"
    if path.exists():
        existing = _with_defaults(read_yaml(path) or {})
        if _without_counts(existing) != _without_counts(space.model_dump(mode="json")):
            raise ConfigErrors([ConfigError(
                "study.name", f"{study_dir} holds a study of another space (see its space.yaml); "
                              "use another study name or --results-dir to start a new one")])


def _with_defaults(data: dict) -> dict:
    from pydantic import ValidationError

    try:
        return SearchSpace.model_validate(data).model_dump(mode="json")
    except ValidationError:  # a field since removed: compare as written (and refuse)
        return data


def _write_space(space: SearchSpace, study_dir: Path) -> None:
    """Keep the resolved space beside the study (checked by `_check_space` first)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(study_dir / "space.yaml", yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))


def _without_counts(data: dict) -> dict:
    # Baselines run in their own study (archsearch.search.baselines): adding one resumes the search.
    study = {k: v for k, v in (data.get("study") or {}).items() if k not in ("trials", "timeout", "device", "baselines")}
    return {**data, "study": study}


logging.getLogger("optuna").setLevel(logging.ERROR)
