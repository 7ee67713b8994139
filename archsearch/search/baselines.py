"""A search's hand-designed baselines (`study.baselines`), trained by the search's own protocol.

    run = run_baselines(space, "results")     # trains the baselines without a finished trial
    run.table                                 # one row per trial, `baseline` its name as written

Each baseline is a fixed trial run through the one engine (archsearch.search.engine) from a
`QueueSource`, as `archsearch ablate` and `verify` queue theirs: a trial of the study
`<name>-baselines` in the search's storage (its folder's journal, or `--storage URL`), under the
search's data, train, eval and measure settings and its objectives and constraints. Being another
study, a baseline never counts toward `study.trials` and the sampler never sees it. Its files are
in `<study folder>/baselines/` (`trials.csv`, `trials/<number>/`), kept by the observers the
caller passes (archsearch.folder.run_study passes a StudyFolder).

The baselines study records the user attributes `kind: baselines` and `baselines_of: <name>`, and
on each trial `baseline` (its label: the preset or file as written, or a mapping's `name`). A
baseline is identified by its config hash and settings hash, so a rerun trains only those without
a finished trial, and one whose settings changed is trained again. Its speed anchor is the
search's (`reference_throughput`), so the stored normalized speeds compare with the search's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import Observer

if TYPE_CHECKING:
    from ..schema.space import SearchSpace
    from .engine import Fixed

__all__ = ["BaselineRun", "run_baselines", "baseline_items", "baselines_name", "BASELINES_FOLDER", "BASELINES_SUFFIX"]

BASELINES_FOLDER = "baselines"  # inside the search's study folder
BASELINES_SUFFIX = "-baselines"  # the baselines study of the search `<name>` is `<name>-baselines`
_STALE = "skipped: not among the space file's study.baselines any more"


@dataclass
class BaselineRun:
    name: str                 # the baselines study
    study: Any                # the optuna Study
    folder: Path              # <study folder>/baselines
    pending: list[str]        # labels without a finished trial


def baselines_name(name: str) -> str:
    """The baselines study of the search `name`."""
    return f"{name}{BASELINES_SUFFIX}"


def baseline_items(space: SearchSpace) -> tuple[dict[str, Fixed], dict[str, SearchSpace]]:
    """Every baseline of `space` as a queue item and the fixed space it runs in, by label."""
    from ..schema.space import baseline_architectures, space_from_dict
    from .engine import Fixed
    from .objective import config_hash, settings_hash

    data = space.model_dump(mode="json")
    kept = ("device", "max_retries", "heartbeat_interval", "grace_period", "seed", "checkpoints")
    study = {k: v for k, v in data["study"].items() if k in kept}
    configs = baseline_architectures(space)
    items, spaces = {}, {}
    for label, config in configs:
        fixed = space_from_dict({
            **{k: data[k] for k in ("data", "train", "eval", "measure", "objectives", "constraints")},
            "study": {**study, "name": baselines_name(space.study.name), "trials": max(len(configs), 1),
                      "sampler": {"kind": "random"}},
            "architecture": config.model_dump(mode="json"),
        })
        identity = (config_hash(config), settings_hash(fixed.fixed_train(), fixed))
        items[label] = Fixed(identity, {"baseline": label}, f"baseline {label}")
        spaces[label] = fixed
    return items, spaces


def run_baselines(space: SearchSpace, results_dir: str | Path = "results", storage: str | None = None,
                  device: str | None = None, observers: list[Observer] = (), search_study=None) -> BaselineRun | None:
    """Train every baseline of `space` without a finished trial (None when it lists none), telling
    `observers`; see the module docstring. `search_study`, the search's Optuna study, lends its speed anchor."""
    from .engine import QueueSource, observing, run_trials, unfinished
    from .events import Broadcast
    from .preflight import check_inputs
    from .speed import REFERENCE_ATTR
    from .storage import open_storage
    from .study import create_study
    from .worker import handle_signals

    if not space.study.baselines:
        return None
    items, spaces = baseline_items(space)
    first = next(iter(spaces.values()))
    study_dir = Path(results_dir) / space.study.name
    folder = study_dir / BASELINES_FOLDER
    handle = open_storage(storage, study_dir)
    bstudy = create_study(first, handle)
    bstudy.set_user_attr("kind", "baselines")
    bstudy.set_user_attr("baselines_of", space.study.name)
    anchor = search_study.user_attrs.get(REFERENCE_ATTR) if search_study is not None else None
    if anchor and REFERENCE_ATTR not in bstudy.user_attrs:
        bstudy.set_user_attr(REFERENCE_ATTR, anchor)
    queue = QueueSource(items, spaces.__getitem__, _STALE)
    if queue.done(bstudy) < len(items):
        device_path, device = ("--device", device) if device else ("study.device", space.study.device)
        context = check_inputs(first.data, first.eval, first.train, device, device_path, spec=first)
        hear = Broadcast(list(observers))
        with observing(bstudy, queue, hear), handle_signals():
            run_trials(bstudy, queue, context, hear, study_cfg=first.study, study_dir=folder)
    return BaselineRun(bstudy.study_name, bstudy, folder, unfinished(bstudy.get_trials(deepcopy=False), queue.identities))
