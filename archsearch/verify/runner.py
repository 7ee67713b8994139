"""`archsearch verify`: retrain a study's front and a sample of the rest longer, and compare.

    run = verify_study("results/quickstart", factor=10)    # trains what is missing, then writes verify.md
    run.verification.verdict                               # archsearch.verify.analysis.Verification

The retrains (archsearch.verify.selection: which trials, which budgets) run through the one engine
(archsearch.search.engine) from a `QueueSource` of fixed (config, settings) pairs, as
`archsearch ablate`'s do: each is a trial of the **verify study** `<name>-verify`, kept in the
source study's storage (its folder's journal, or `--storage URL`), so `archsearch results` and
optuna-dashboard show it beside the source. Its files are in `<study folder>/verify/`
(`trials.csv`, `trials/<number>/`, written by archsearch.folder.StudyFolder).

What the verify study records:
- its user attributes `kind: verify`, `verify_of: <source name>`, the objectives of the source,
  `items` (the retrains of the last run: source_trial, role, budget, config_hash, settings_hash),
  `plan` (factor, steps, dominated, seeds, rounds, quality of that run) and `remeasure` (the front's
  re-measured speed, archsearch.verify.remeasure);
- on every trial, beside what any trial records (config, train, val_loss, ...): `source_trial`
  (the number of the trial it retrains), `budget` (`long`, or `seed`: the original budget with
  the next seed) and `role` (`front` or `dominated`); `train.steps` is the budget it trained.

With `quality` (`--quality`) every retrain also measures its sample quality after training
(`eval.quality`: the study's own section when its space has one, else the defaults; `fd`, `kid`,
... on its trial), for archsearch.verify.analysis's quality figures. The quality settings are
part of a retrain's settings hash, so the retrains of an earlier run without `--quality` do not
count for one with it: they are trained again, measuring quality this time. A study that
searched on a quality metric has `eval.quality` in its space, so its retrains measure it anyway.

Resuming is the queue's: a rerun trains only the retrains without a finished trial; Ctrl-C fails
the running one as `interrupted` and the next run trains it again; several processes (`--workers`,
or `archsearch verify` started on several machines with one `--storage`) share the queue. The
re-measurement runs once every retrain is finished, in the process that gets there, and is kept;
the analysis and `verify.md` are rewritten on every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ..errors import ConfigError, ConfigErrors
from ..results import objective_names, open_study, trials_dataframe
from ..search.engine import Fixed, QueueSource, observing, run_trials, unfinished
from ..search.events import Broadcast, Observer
from .analysis import QUALITY, Verification, verification_of, verify_name
from ..metrics import TIMED_METRICS
from .selection import FRONT, LONG, MAX_FACTOR, Retrain, retrain_plan, select_trials

__all__ = ["VerifyRun", "verify_study", "check_options", "retrain_spaces", "DEFAULT_FACTOR", "VERIFY_FOLDER"]

DEFAULT_FACTOR = 10.0
VERIFY_FOLDER = "verify"  # inside the source study's folder: the verify study's trials and tables
_STALE = "skipped: queued by a verify run of other budgets or trials"


@dataclass
class VerifyRun:
    study_dir: Path
    storage: str                    # described, password redacted
    verification: Verification
    files: list[Path]               # verify.md and the plots
    pending: list[tuple[int, str]]  # (source trial, budget) without a finished trial


def check_options(factor: float | None, steps: int | None, dominated: int, seeds: int, rounds: int,
                  workers: int, storage: str | None = None) -> list[ConfigError]:
    """The option errors that need no study (budgets against each trial's steps are checked later)."""
    from ..urls import check_storage_url

    errors = []
    if storage:
        try:
            check_storage_url(storage)
        except ConfigError as exc:
            errors.append(exc)
    if factor is not None and steps is not None:
        errors.append(ConfigError("--steps", "give --factor or --steps, not both"))
    if factor is not None and not 1 < factor <= MAX_FACTOR:
        errors.append(ConfigError("--factor", f"{factor:g}; the longer budget is factor × each trial's train.steps, "
                                              f"so give a factor above 1 and at most {MAX_FACTOR}"))
    if steps is not None and steps < 1:
        errors.append(ConfigError("--steps", f"{steps}; give a number of training steps"))
    if dominated < 0:
        errors.append(ConfigError("--dominated", f"{dominated}; give 0 or more dominated trials to retrain"))
    if seeds not in (1, 2):
        errors.append(ConfigError("--seeds", f"{seeds}; use 1 (the original seed) or 2 (also retrain at the original "
                                             "budget with the next seed, the noise floor of the ranking)"))
    if rounds != 0 and not 3 <= rounds <= 1000:
        errors.append(ConfigError("--rounds", f"{rounds}; re-measure the front in 3 to 1000 rounds (a spread needs "
                                              "several), or 0 not to"))
    if workers < 1:
        errors.append(ConfigError("--workers", f"{workers} workers; give at least 1"))
    return errors


def verify_study(study_dir: str | Path | None = None, storage: str | None = None, study: str | None = None, *,
                 factor: float | None = None, steps: int | None = None, dominated: int = 4, seeds: int = 1,
                 rounds: int = 5, workers: int = 1, device: str | None = None, quality: bool = False,
                 console: Console | None = None, live: bool = True, observers: list[Observer] = ()) -> VerifyRun:
    """Retrain what is missing, re-measure the front's speed, analyze, write verify.md; see the
    module docstring. Bad input raises ConfigErrors before anything is written; SIGINT/SIGTERM
    raise `Interrupted` after recording the running retrain."""
    from ..folder import StudyFolder
    from ..ablation.runner import QueueDisplay
    from ..search.preflight import check_inputs
    from ..search.storage import describe_storage, open_storage
    from ..search.study import quiet_optuna
    from .report import write_verification

    errors = check_options(factor, steps, dominated, seeds, rounds, workers, storage)
    if errors:
        raise ConfigErrors(errors)
    if factor is None and steps is None:
        factor = DEFAULT_FACTOR
    quiet_optuna()
    source = open_study(study_dir, storage, study)
    folder = Path(study_dir) if study_dir is not None else Path("results") / source.study_name
    space_data, objectives, directions, plan = _plan(source, folder, factor, steps, dominated, seeds)
    name = verify_name(source.study_name)
    spaces = retrain_spaces(plan, space_data, name, quality)
    items = {r.key: Fixed(r.identity(spaces[r.key]), {"source_trial": r.source_trial, "budget": r.budget, "role": r.role},
                          r.label) for r in plan}
    first = spaces[plan[0].key]
    device_path, device = ("--device", device) if device else ("study.device", first.study.device)
    console = console or Console()
    queue = QueueSource(items, spaces.__getitem__, _STALE)
    view = QueueDisplay(console, name, len(items), enabled=live and console.is_terminal, label=queue.label)
    context = check_inputs(first.data, first.eval, plan[0].train, device, device_path, on_load=view.data_loaded,
                           spec=_largest(spaces.values()), read=True)  # read before the verify study is made

    vstudy = _open_verify_study(first, open_storage(storage, folder), source.study_name, folder)
    vstudy.set_user_attr("items", [{"source_trial": r.source_trial, "role": r.role, "budget": r.budget,
                                    "config_hash": items[r.key].identity[0], "settings_hash": items[r.key].identity[1]}
                                   for r in plan])
    vstudy.set_user_attr("plan", {"factor": factor, "steps": steps, "dominated": dominated, "seeds": seeds,
                                  "rounds": rounds, "quality": quality})
    verify_dir = folder / VERIFY_FOLDER
    hear = Broadcast([StudyFolder(verify_dir, objectives, directions, first.study.checkpoints), view, *observers])
    with view, observing(vstudy, queue, hear):
        _train(vstudy, queue, context, hear, first, verify_dir, workers, device, storage, folder, spaces, items)

    trials = vstudy.get_trials(deepcopy=False)
    pending = unfinished(trials, queue.identities)
    if not pending:
        from ..search.worker import handle_signals

        with handle_signals():  # Ctrl-C: `interrupted`, exit 130; nothing is kept, the next run measures again
            _remeasure(vstudy, plan, first, device, rounds, objectives, console)
    df = trials_dataframe(source.get_trials(deepcopy=False), objectives)
    verification = verification_of(df, objectives, directions, vstudy)
    files = write_verification(verification, folder)
    return VerifyRun(folder, describe_storage(storage, folder), verification, files, pending)


def retrain_spaces(plan: list[Retrain], space_data: dict, name: str, quality: bool = False) -> dict:
    """The space each retrain runs in the verify study `name`, by its key; with `quality`, with
    sample quality on (the source space's `eval.quality`, else its defaults)."""
    from ..schema.space import with_quality

    return {r.key: with_quality(r.space(space_data, name, len(plan)), asked=quality) for r in plan}


def _plan(source, folder: Path, factor, steps, dominated, seeds):
    """The source's space file, objectives and directions, and the retrains to run."""
    from ..report.analysis import read_space

    if source.user_attrs.get("verify_of"):
        raise ConfigErrors([ConfigError("--study", f"{source.study_name!r} is itself a verify study; verify its source "
                                                   f"{source.user_attrs['verify_of']!r}")])
    space_data = read_space(folder)
    if space_data is None:
        raise ConfigErrors([ConfigError(str(folder), "holds no space.yaml: verify retrains under the data, validation and "
                                                     "timing settings that `archsearch run` keeps there; give the study's folder")])
    objectives, directions = objective_names(source), [d.name.lower() for d in source.directions]
    if "val_loss" not in objectives and QUALITY not in objectives:
        raise ConfigErrors([ConfigError("objectives", f"the study optimizes {', '.join(objectives)}; verify checks how "
                                                      f"its val_loss (or {QUALITY}) ranking holds at a longer budget")])
    trials = source.get_trials(deepcopy=False)
    picks = select_trials(trials_dataframe(trials, objectives), objectives, directions, dominated)
    if not picks:
        raise ConfigErrors([ConfigError(str(folder), "has no completed, feasible trial: nothing to verify yet")])
    plan = retrain_plan({t.number: t for t in trials}, picks, factor, steps, seeds)
    return space_data, objectives, directions, plan


def _open_verify_study(space, storage, source_name: str, folder: Path):
    """Create or load `<name>-verify` with the source's objectives, and link it to the source."""
    from ..search.study import create_study

    vstudy = create_study(space, storage)
    if vstudy.user_attrs.get("verify_of") != source_name and vstudy.get_trials(deepcopy=False):
        raise ConfigErrors([ConfigError("--study", f"the storage of {folder} holds a study {vstudy.study_name!r} that is not "
                                                   f"the verify study of {source_name!r}; rename one of them")])
    vstudy.set_user_attr("kind", "verify")
    vstudy.set_user_attr("verify_of", source_name)
    return vstudy


def _train(vstudy, queue, context, hear, space, verify_dir, workers, device, storage, folder, spaces, items) -> None:
    """The retrains, in this process or in `workers` processes sharing the queue."""
    from ..search.study import run_workers
    from ..search.worker import handle_signals

    workers = min(workers, max(1, len(items) - queue.done(vstudy)))  # more would start torch only to wait
    if workers <= 1:
        with handle_signals():
            run_trials(vstudy, queue, context, hear, study_cfg=space.study, study_dir=verify_dir)
        return
    from ..folder import StudyFolder

    folder_view = StudyFolder(verify_dir, [o.metric for o in space.objectives], [o.direction for o in space.objectives],
                              space.study.checkpoints)
    data = {key: s.model_dump(mode="json") for key, s in spaces.items()}
    args = (vstudy.study_name, str(folder), storage, items, data, [folder_view])
    run_workers(vstudy, queue, hear, len(items), workers, device, None, None, _work, args)


def _work(index, device, threads, seconds_left, name, folder, storage, items, spaces, observers) -> None:
    """A verify worker process (archsearch.search.study.run_workers): the engine on the shared queue."""
    import optuna

    from ..schema.space import space_from_dict
    from ..search.storage import open_storage
    from ..search.study import worker_setup
    from ..trial import LazyContext

    worker_setup(threads)
    vstudy = optuna.load_study(study_name=name, storage=open_storage(storage, Path(folder)))
    parsed = {key: space_from_dict(data) for key, data in spaces.items()}
    first = next(iter(parsed.values()))
    run_trials(vstudy, QueueSource(items, parsed.__getitem__, _STALE), LazyContext(first.data, first.eval, device),
               Broadcast(observers), study_cfg=first.study, study_dir=Path(folder) / VERIFY_FOLDER)


def _remeasure(vstudy, plan: list[Retrain], space, device: str, rounds: int, objectives: list[str],
               console: Console) -> None:
    """Re-measure the front's speed objectives (archsearch.verify.remeasure), unless the study
    holds a record for these members, metrics and rounds."""
    from .remeasure import remeasure_front

    metrics = [m for m in TIMED_METRICS if m in objectives]
    # A retrain's settings differ from its source trial's in steps or seed only: same batch size and precision.
    front = {r.source_trial: (r.config, r.train) for r in plan if r.role == FRONT and r.budget == LONG}
    held = vstudy.user_attrs.get("remeasure") or {}
    wanted = {"metrics": metrics, "rounds": rounds, "members": list(front)}
    if not rounds or not metrics or all(held.get(k) == v for k, v in wanted.items()):
        return
    console.print(f"re-measuring {', '.join(metrics)} of the {len(front)} front members, {rounds} interleaved rounds")
    started = time.perf_counter()
    record = remeasure_front(front, space, device, rounds, metrics)
    record["seconds"] = round(time.perf_counter() - started, 1)
    vstudy.set_user_attr("remeasure", record)


def _largest(spaces):
    """The retrain space whose network needs the most memory (archsearch.search.memory), for the
    check made before anything is written."""
    from ..search.memory import largest_network

    def need(space) -> int:
        batch = space.fixed_train().batch_size
        network = largest_network(space, batch)
        return 0 if network is None else network.need(batch)

    return max(spaces, key=need)
